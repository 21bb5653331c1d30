"""The automatic mask generator (`generator`): a grid of point prompts, batched decoding,
mask quality filters (`mask_scoring`) and box / crop utilities (`utils`)."""
