"""Videos: the compiled frame loop over the memory core (`loop`), the interactive predictor
(`predictor`, its session state in `state`), the frame-at-a-time tracker (`stream`), frame
sources (`frames`, `io`, `scratch_file`) and outputs (`postprocess`, `output`).

Empty on purpose: the numpy-only modules here (frames, state, io, postprocess) are imported
by the exported predictors, which must not import the model code.
"""
