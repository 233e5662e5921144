"""MFGAN: a SASRec+ generator trained against per-factor discriminators (model.py, discriminator.py, factors.py)."""
