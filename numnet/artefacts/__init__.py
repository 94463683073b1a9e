"""The paper artefacts without a grid of runs, one module each (``main(argv)``), run by
``python -m numnet.reproduce <name>``: Fig. 2, the theory, the learned kernels, stability, Fig. 9."""
