"""The frame sampler: which frames are worth a human's time, within an hourly budget per policy.

`config` reads the policy file, `frame` is what the sampler sees and decides, `rules` the pure
policy rules, `state` what they keep between frames, and `sampler` binds them (`build_sampler`).
"""
