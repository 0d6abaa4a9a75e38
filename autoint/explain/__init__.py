"""Explanations: the attention and its readings, the interactions the model measurably uses (k-SII), attributions,
what-if, recommendations, and the Learn page's steps."""

BASELINES = ("mean", "unknown")  # what an absent field becomes: its training-mean embedding, or its <unknown> slot
