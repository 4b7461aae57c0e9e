"""Data-free prune plans: which conv layers to prune and by how much, from the filters alone (docs/prune.md).

``prune_plan(model, target=0.5)`` reads any model ``filterdb check`` reads and returns a :class:`PrunePlan`;
``filterdb.integrations.torch_pruning`` applies one to a ``torch.nn.Module`` with Torch-Pruning.
"""

from ._build import PlanSettings, prune_plan
from ._headroom import HEADROOM_KIND, Headroom, headroom
from ._plan import REASONS, LayerPlan, PrunePlan
from ._scores import ChannelScores, channel_scores

__all__ = ["prune_plan", "PrunePlan", "LayerPlan", "PlanSettings", "REASONS", "ChannelScores", "channel_scores",
           "Headroom", "headroom", "HEADROOM_KIND"]
