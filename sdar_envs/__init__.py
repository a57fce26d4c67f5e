"""Text benchmarks as Gymnasium environments.

`import sdar_envs` registers the environments; `gym.make("sdar_envs:sdar/ALFWorld-v0")` works
without the import. Registration holds string entry points only, so the engines (TextWorld,
Java, Flask) load when an env is made, not here.
"""

from gymnasium.envs.registration import register, registry

from sdar_envs.core import INFO_KEYS, TextEnv, TextSpace

__all__ = ["INFO_KEYS", "TextEnv", "TextSpace", "ENV_IDS"]

ENV_IDS = ("sdar/ALFWorld-v0", "sdar/WebShop-v0", "sdar/SearchQA-v0")

if "sdar/ALFWorld-v0" not in registry:
    register(
        id="sdar/ALFWorld-v0",
        entry_point="sdar_envs.alfworld.env:ALFWorldEnv",
        max_episode_steps=50,
    )

if "sdar/WebShop-v0" not in registry:
    register(
        id="sdar/WebShop-v0",
        entry_point="sdar_envs.webshop.env:WebShopEnv",
        max_episode_steps=15,
    )

if "sdar/SearchQA-v0" not in registry:
    register(
        id="sdar/SearchQA-v0",
        entry_point="sdar_envs.searchqa.env:SearchQAEnv",
        max_episode_steps=4,
    )
