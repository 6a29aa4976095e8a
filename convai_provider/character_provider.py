"""Old home of CharacterModelProvider: state written before the re-cut holds the provider pickled
by reference to this module path, and Pulumi unpickles it for refresh and destroy. Keep it."""

from convai_provider.resources.character_model import CharacterModelProvider

__all__ = ["CharacterModelProvider"]
