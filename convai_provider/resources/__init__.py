"""The Pulumi resources: one module per resource (its schema, provider and resource class), and
what their providers share."""
