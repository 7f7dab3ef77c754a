"""Audio stem models: a mel VAE, multi-track latent diffusion (MSG-LD) and GMSDI, on rendered stems."""
