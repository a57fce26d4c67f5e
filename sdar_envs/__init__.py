"""Text benchmarks as Gymnasium environments.

`import sdar_envs` registers the environments, then `gym.make("sdar/WebShop-v0")`; the prefix form
`gym.make("sdar_envs:sdar/WebShop-v0")` works without the import. Registration holds string entry
points only, so the engines (TextWorld, Java, Flask) load when an env is made, not here.
"""

from gymnasium.envs.registration import register, registry

from sdar_envs.core import INFO_KEYS, ExpertStep, TextEnv, TextSpace

__all__ = ["INFO_KEYS", "ExpertStep", "TextEnv", "TextSpace", "ENV_IDS"]

#: id -> (entry point, episode limit of the reference recipe)
_ENVS = {
    "sdar/ALFWorld-v0": ("sdar_envs.alfworld.env:ALFWorldEnv", 50),
    "sdar/WebShop-v0": ("sdar_envs.webshop.env:WebShopEnv", 15),
    "sdar/SearchQA-v0": ("sdar_envs.searchqa.env:SearchQAEnv", 4),
}
ENV_IDS = tuple(_ENVS)

for _id, (_entry_point, _limit) in _ENVS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry_point, max_episode_steps=_limit)
