"""Bind characters to a private model another team registered (docs/lookups.md).

Stack config: convai:apiKey (secret) and, off Convai's own host, convai:baseUrl;
lookups:sharedModel, the model's group name; lookups:characters, the character IDs to bind.
"""

import pulumi

from convai_provider import ConvaiCharacterModel
from convai_provider.resources.lookups import character_model, private_model, private_models

config = pulumi.Config("lookups")
shared = private_model(config.require("sharedModel"))  # stops the program if it is not there

for char_id in config.require_object("characters"):
    pulumi.export(f"before-{char_id}", character_model(char_id))
    ConvaiCharacterModel(
        f"character-{char_id}",
        char_id=char_id,
        model_group_name=shared["model_group_name"],
        fallback_model_group_name="gpt-4o-mini",
    )

pulumi.export("sharedModel", shared)
pulumi.export("accountModels", private_models().apply(len))
