"""Base models as diffusers modules (ModelBundle), from wherever they come.

Entry points:
- `ldm_bundle.bundle_from_ldm_state_dict(state_dict, arch=None, *, prediction_type=None,
  source=None, tokenizers=None, configs=None, vae=None)`: from an in-memory LDM/SGM state
  dict, e.g. the WebUI's loaded model; the modules use the caller's tensors (no copy).
- `loading.load_bundle(name_or_path, ...)`: a checkpoint file, a diffusers folder or a
  built-in tiny model (`builtin:tiny-sd1`, `builtin:tiny-sd2`, `builtin:tiny-sdxl`).
- `loading.prepare_model(config, bundle=None)`: the run's model with kohya's v2 / sdxl /
  v_parameterization / vae / clip_skip options applied and checked.
"""
