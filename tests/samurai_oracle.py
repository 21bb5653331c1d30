"""Runs the SAMURAI package (`absolutely-not-samurai`, its own top-level `sam2`) on one
video: a box on frame 0 for one object, forward propagation; writes the masks.

Run in a subprocess whose PYTHONPATH puts the package's directory first (it shadows the
reference `sam2`):

    python tests/samurai_oracle.py ARGS.json OUT.npz

ARGS.json: {"config": ..., "overrides": [...], "checkpoint": ..., "frames": DIR,
"num_frames": N, "box": [x1, y1, x2, y2]} (box in video pixels). OUT.npz: "masks"
(N, H, W) bool, frame order.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch


def main(args_path: str, out_path: str) -> None:
    import sam2
    from sam2.build_sam import build_sam2_video_predictor

    try:
        import sam2.utils.kalman_filter  # noqa: F401  (only SAMURAI's sam2 has it)
    except ImportError:
        raise SystemExit(f"not the SAMURAI package's sam2: {sam2.__file__}") from None
    args = json.load(open(args_path))
    predictor = build_sam2_video_predictor(
        args["config"], args["checkpoint"], device="cpu", hydra_overrides_extra=args["overrides"]
    )
    assert predictor.samurai_mode
    masks = {}
    with torch.inference_mode():
        state = predictor.init_state(video_path=args["frames"])
        state["num_frames"] = args["num_frames"]  # its first frames
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=args["box"])
        for f, _, m in predictor.propagate_in_video(state):
            masks[f] = m.numpy()[0, 0] > 0
    np.savez(out_path, masks=np.stack([masks[f] for f in range(args["num_frames"])]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
