"""Stage implementations: plain functions from (config, data, folder) to artifacts.

Each stage is runnable alone (the `train-vae` / `eval-recon` commands call them directly)
and by the Ray runner (`ablations.runner`), which only adds scheduling, retries and the
results store around them.
"""
