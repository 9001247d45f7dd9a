"""Latency-aware once-for-all search (GAN Compression style), the torch side.

- :mod:`distill.search.space`: the search space (per-stage widths, depth, block type, up-sampling, norm),
  sampling, mutation and the reference sub-network (``mobile_resnet_9blocks`` at ngf 16);
- :mod:`distill.search.supernet`: one set of weights for every sub-network; ``extract`` turns a sub-network
  into a ``searchable_resnet`` zoo model with the supernet's weights;
- :mod:`distill.search.data`: photos and the teacher's outputs on them (train crops, held-out images);
- :mod:`distill.search.train`: supernet distillation with channel sampling, norm re-calibration,
  ``psnr_teacher`` and fine-tuning;
- :mod:`distill.search.evolve`: the evolutionary search and the Pareto front, given scoring callbacks.

Latency is measured outside ``distill`` (``benchmarks/search.py``), through the export path.
"""
