"""Old home of PrivateModelProvider: state written before the re-cut holds the provider pickled by
reference to this module path, and Pulumi unpickles it for refresh and destroy. Keep it."""

from convai_provider.resources.private_model import PrivateModelProvider

__all__ = ["PrivateModelProvider"]
