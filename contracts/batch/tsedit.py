"""The tsedit batch format: what tsedit datamodules produce and tsedit models read.

Series are multivariate windows [B, C, L] (channels first), normalised with the training split's per-channel
mean and std, so every error below is in "training standard deviations".

Training batch:  x [B,C,L] float, attr [B] long (the attribute the diffusion model is conditioned on).
Edit batch (validation/test; one frozen edit task per row):
  x              [B,C,L]   the source series to edit
  attr           [B]       its attribute
  anchor_value   [B,C,L]   point anchors: target value at (channel, time); 0 where there is no anchor
  anchor_conf    [B,C,L]   their confidence w in (0, 1]; 0 where there is no anchor
  seg_weight     [B,K,C,L] segment statistic k is the linear functional <seg_weight[k], x>
                           (mean over a window: 1/n on the window; sum: 1 on the window; 0 elsewhere)
  seg_target     [B,K]     the target value of each statistic
  seg_scale      [B,K]     the statistic's size in per-point units (1 for a mean, n for a sum of n points):
                           segment errors are divided by it, so tolerances read in standard deviations
  seg_active     [B,K]     1 for a real constraint, 0 for padding (rows have 0..K segments)
  edit_mask      [B,C,L]   1 inside the edited region (anchors +- the task's radius, segment windows);
                           preservation is measured on the complement
  sample_idx     [B]       the task's row in its split (seeds the sampling noise reproducibly)
"""
X = "x"
ATTR = "attr"
ANCHOR_VALUE = "anchor_value"
ANCHOR_CONF = "anchor_conf"
SEG_WEIGHT = "seg_weight"
SEG_TARGET = "seg_target"
SEG_SCALE = "seg_scale"
SEG_ACTIVE = "seg_active"
EDIT_MASK = "edit_mask"
SAMPLE_IDX = "sample_idx"

EDIT_KEYS = (X, ATTR, ANCHOR_VALUE, ANCHOR_CONF, SEG_WEIGHT, SEG_TARGET, SEG_SCALE, SEG_ACTIVE, EDIT_MASK, SAMPLE_IDX)
