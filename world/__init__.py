"""The synthetic world: scenes with reference labels, a small detector learned from pixels, and its
evaluation (mAP). The embedded local AWS serves and trains the detector; the demo, the chaos suite and
``make experiment`` draw their days from the scenes. NumPy and Pillow only, no downloads."""

# The S3 object metadata key under which an uploaded scene keeps its reference boxes (JSON): what the
# local AWS's reference reviewers answer with.
REFERENCE_METADATA = "reference-boxes"
