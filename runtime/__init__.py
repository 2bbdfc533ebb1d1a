"""The streaming runtime: engines, sources, pairing, pre/post-processing, pipeline, sinks.

Never imports torch: it must run on a device that only has engines.
"""
