"""dynsim.training.spec: the recorded curves are known before anything runs, and match the program."""
import jax
import numpy as np
import pytest

from dynsim import data, models
from dynsim.hessian import Hessian
from dynsim.optim.spec import resolve_optimizer
from dynsim.training import device, kernel
from dynsim.training import spec as spec_mod


@pytest.fixture(scope="module")
def digits():
    d = data.load("digits")
    return data.Dataset(d.x_train[:240], d.y_train[:240], d.x_test[:60], d.y_test[:60], "digits-240", 10)


@pytest.mark.parametrize("rule, hessian_every", [("rmsprop_sa", 2), ("super_accelerated", 0)])
def test_record_names_match_the_program(digits, rule, hessian_every):
    """record_names (the store's layout, known before anything runs) lists exactly what the program records."""
    model, opt = models.get("nielsen_30"), resolve_optimizer(rule)
    hp = {k: float(opt.defaults.get(k, 0.5)) for k in opt.params if k != "lookahead"}
    spec = spec_mod.ProgramSpec(model=model, optimizer=opt, hp_names=tuple(hp), static=(), full_batch=True,
                          batch_size=240, steps_per_block=2, blocks_per_call=1, eval_train=True, eval_test=False,
                          eval_batch=100, input_shape=(64,), dtype="float32",
                                hessian=Hessian(hessian_every, k=2, iters=4) if hessian_every else None)
    carry = kernel.initial_carry(opt.build(**hp), kernel.initial_params(model, [0], (64,), "float32"), np.float32)
    x = digits.flatten()
    d = (x.x_train.astype(np.float32), x.y_train, x.x_test.astype(np.float32), x.y_test)
    out = jax.eval_shape(device.program(spec), carry, {k: np.array([v], np.float32) for k, v in hp.items()},
                         np.array([0], np.int32), d, np.int32(0), np.bool_(True))[1]
    assert {k: v.shape[2:] for k, v in out.items()} == spec_mod.record_names(spec)
