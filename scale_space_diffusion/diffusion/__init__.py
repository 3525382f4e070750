"""The diffusion math: pure tensor functions and small frozen objects, no ``nn.Module`` state, no Lightning.

schedule (t -> a_t, sigma_t), ladder (t -> r(t)), degradation (R and R^T), process (forward marginals and the
exact posterior), parameterization (raw network output -> x0_hat), loss, spectral_loss, sampler, rng.
"""
