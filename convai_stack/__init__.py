"""The convai-models Pulumi program: inference endpoints and the Convai models that use them."""
