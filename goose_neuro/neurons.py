"""Leaky integrate-and-fire neurons with ternary, binary or no spikes.

Built on snnTorch: both neuron classes subclass ``snntorch.SpikingNeuron`` (its threshold and
graded-spike-factor parameters) and use snnTorch's surrogate-gradient functions. Unlike
snnTorch's own neurons, the state is passed in and returned explicitly (no hidden state in the
module), because tokens are the time axis and the state must travel with the model's recurrent
state.

:class:`SpikeLIF` (``neuron="subtract"``, the default), per channel c and token t
(``beta = sigmoid(beta_logit)`` per channel, ``th = |threshold|``)::

    mem_t = beta * mem_{t-1} + x_t
    ternary: s_t = H(mem_t - th) - H(-mem_t - th)        in {-1, 0, +1}
    binary:  s_t = H(mem_t - th)                          in {0, 1}
    mem_t <- mem_t - s_t * th                             (subtract reset)
    out_t = a * s_t                                       (a = amplitude)

:class:`TernaryLIFNeuron` (``neuron="ternary_lif"``): lava-nc's ``TernaryLIF``, a current and a
voltage compartment with one decay each per population and reset to zero::

    u_t = beta_u * u_{t-1} + x_t
    m_t = beta * v_{t-1} + u_t
    s_t = H(m_t - th) - H(-m_t - th);   v_t = m_t (1 - |s_t|);   out_t = a * s_t

H is the Heaviside step in the forward pass and the chosen surrogate's derivative in the backward
pass (the reset-to-zero factor ``1 - |s_t|`` is treated as a constant in the backward pass, the
usual detached reset). Mode ``none`` is the dense ablation: ``out_t = x_t``, state untouched.

Fixed-point neurons (``ModelConfig.fixed_point``, or :meth:`set_fixed_point` with a
:class:`~goose_neuro.fixed_point.NeuronFormat`) replace the update by the integer neuron of a
neuromorphic target (:mod:`goose_neuro.fixed_point` has the equations): inputs rounded to integer
mantissas, 12-bit decays truncating toward zero, 24-bit state. Gradients pass straight through
the rounding: the backward pass is the float neuron's, evaluated on the integer trajectory
(converted to float units), so a model trains with the arithmetic it will be deployed with. In
fixed-point mode the state holds the integer compartments (``v`` and, for ``ternary_lif``, ``u``;
integers below 2^24 are exact in float32).
"""

from __future__ import annotations

import math

import snntorch
import torch
from snntorch import surrogate
from torch import Tensor, nn

from goose_neuro.errors import ConfigError
from goose_neuro.fixed_point import NeuronFormat


def make_surrogate(name: str, slope: float):
    """snnTorch surrogate spike function by name.

    ``atan``: dS/dU = (alpha/2) / (1 + (pi/2 * alpha * U)^2)   (Fang et al. 2021)
    ``fast_sigmoid``: dS/dU = 1 / (1 + k|U|)^2                  (Zenke & Ganguli 2018)
    ``sigmoid``: dS/dU = k e^{-kU} / (1 + e^{-kU})^2
    """
    if name == "atan":
        return surrogate.atan(alpha=slope)
    if name == "fast_sigmoid":
        return surrogate.fast_sigmoid(slope=slope)
    if name == "sigmoid":
        return surrogate.sigmoid(slope=slope)
    raise ConfigError(f"unknown surrogate {name!r}")


def surrogate_grad_closed_form(name: str, slope: float, u: Tensor) -> Tensor:
    """dS/dU of the surrogate at ``u``, in closed form (used by tests and docs)."""
    if name == "atan":
        return (slope / 2) / (1 + (math.pi / 2 * slope * u) ** 2)
    if name == "fast_sigmoid":
        return 1.0 / (slope * u.abs() + 1.0) ** 2
    if name == "sigmoid":
        e = torch.exp(-slope * u)
        return slope * e / (1 + e) ** 2
    raise ConfigError(f"no closed form recorded for surrogate {name!r}")


def _surrogate_grad_(name: str, slope: float, u: Tensor) -> Tensor:
    """Same values as :func:`surrogate_grad_closed_form`, computed in place on ``u`` (a
    temporary) in as few passes over memory as possible: the backward pass is bound by
    full-tensor passes (and, on a shared CPU, by the thread synchronisation each one costs)."""
    if name == "atan":  # (a/2) / (1 + c^2 u^2) = 1 / (2/a + (2c^2/a) u^2),  c = pi/2 * a
        c2 = (math.pi / 2 * slope) ** 2
        return torch.addcmul(u.new_tensor(2.0 / slope), u, u, value=2.0 * c2 / slope, out=u).reciprocal_()
    if name == "fast_sigmoid":  # (1 + k|u|)^-2
        return torch.add(u.new_tensor(1.0), u.abs_(), alpha=slope, out=u).pow_(-2)
    return surrogate_grad_closed_form(name, slope, u)


def _lif_forward_loop(x: Tensor, mem: Tensor, beta: Tensor, th: Tensor, ternary: bool):
    """Token loop of the update rule; returns (m_t before reset, s_t, m'_t after reset), each (B, T, n).

    Written with as few ops per token as possible (fused multiply-adds, comparisons written
    straight into the preallocated float outputs, per-token views taken once with ``unbind``
    rather than one ``select`` per use): at this size the loop's cost is per-op overhead, not
    arithmetic. Ternary spikes are ``[m > th] - [m < -th]``.
    """
    mems = torch.empty_like(x)
    spikes = torch.empty_like(x)
    posts = torch.empty_like(x)
    neg = torch.empty_like(mem)  # (B, n) scratch for [m < -th]
    nth = -th
    xs, ms, ss, ps = x.unbind(1), mems.unbind(1), spikes.unbind(1), posts.unbind(1)  # T views of (B, n)
    for t in range(len(xs)):
        m = ms[t]
        torch.addcmul(xs[t], beta, mem, out=m)  # beta * mem + x_t
        s = ss[t]
        torch.gt(m, th, out=s)
        if ternary:
            torch.lt(m, nth, out=neg)
            s.sub_(neg)
        mem = ps[t]
        torch.addcmul(m, s, th, value=-1.0, out=mem)  # subtract reset
    return mems, spikes, posts


def _lif_backward_loop(g_s_out: Tensor, sg: Tensor, th: Tensor, beta: Tensor, g_post: Tensor):
    """Reverse-time recursion of the LIF update, one (B, n) slice per token::

        g_s_t  = g_s_out_t - th * P_t          (dL/ds_t; P_t = dL/dm'_t)
        g_m_t  = P_t + sg_t * g_s_t            (dL/dm_t = dL/dx_t)
        P_{t-1} = beta * g_m_t

    ``g_post`` is P_{T-1}. Returns g_m, g_s, P (each (B, T, n)) and P_{-1} (= dL/dmem0)."""
    T = sg.shape[1]
    g_m = torch.empty_like(sg)
    g_s = torch.empty_like(sg)
    post = torch.empty_like(sg)
    if T == 0:
        return g_m, g_s, post, g_post
    post[:, T - 1] = g_post
    outs, sgs, gms, gss, ps = g_s_out.unbind(1), sg.unbind(1), g_m.unbind(1), g_s.unbind(1), post.unbind(1)
    for t in range(T - 1, -1, -1):
        p = ps[t]
        gs = gss[t]
        torch.addcmul(outs[t], th, p, value=-1.0, out=gs)
        gm = gms[t]
        torch.addcmul(p, sgs[t], gs, out=gm)
        if t > 0:
            torch.mul(beta, gm, out=ps[t - 1])
        else:
            g_post = beta * gm
    return g_m, g_s, post, g_post


def _linear_backward_loop(g_post: Tensor, keep: Tensor, inject: Tensor, beta: Tensor):
    """Reverse-time linear recurrence g_t = g_post_t * keep_t + inject_t; g_post_{t-1} = beta g_t.
    Returns g (B, T, n) and the g_post before the first token."""
    g = torch.empty_like(inject)
    gs, keeps, injects = g.unbind(1), keep.unbind(1), inject.unbind(1)
    for t in range(len(gs) - 1, -1, -1):
        torch.addcmul(injects[t], g_post, keeps[t], out=gs[t])
        g_post = beta * gs[t]
    return g, g_post


try:  # TorchScript removes most per-token Python overhead (about 1.5x on CPU); optional
    _lif_forward_loop = torch.jit.script(_lif_forward_loop)
    _lif_backward_loop = torch.jit.script(_lif_backward_loop)
    _linear_backward_loop = torch.jit.script(_linear_backward_loop)
except Exception:  # pragma: no cover - scripting unavailable: the plain loops are identical
    pass


class _LIFScan(torch.autograd.Function):
    """The LIF update over T tokens in one autograd node (the fast path).

    Forward runs the update rule of this module's docstring without building a
    graph per token; backward runs the exact reverse-time recursion of the same
    computation, using the surrogate's closed-form derivative ``g(U)``
    (identical to what snnTorch's surrogate Functions return; a test checks the
    gradients against :meth:`SpikeLIF.forward_reference`)::

        dL/ds_t  = a * dL/dout_t + dL/dspikes_t - th * dL/dm'_t
        dL/dm_t  = dL/dm'_t + dL/ds_t * (g(m_t - th) [+ g(-m_t - th) if ternary])
        dL/dx_t  = dL/dm_t,   dL/dm'_{t-1} = beta * dL/dm_t
        dL/dbeta = sum_t dL/dm_t * m'_{t-1}
        dL/dth   = sum_t (dL/ds_t * ds_t/dth - s_t dL/dm'_t),   dL/da = sum_t dL/dout_t * s_t
        ds/dth   = -g(m - th) [+ g(-m - th) if ternary]

    Cost: the token loops run on (B, n) slices; everything else is about a dozen
    full-tensor passes (the surrogate in place, three products and three reductions), and
    gradients nobody asked for are skipped.
    """

    @staticmethod
    def forward(ctx, x, mem0, beta, th, amp, ternary: bool, sname: str, slope: float):
        mems, spikes, posts = _lif_forward_loop(x, mem0, beta, th, ternary)  # m_t, s_t, m'_t
        ctx.save_for_backward(mem0, beta, th, amp, mems, spikes, posts)
        ctx.ternary, ctx.sname, ctx.slope = ternary, sname, slope
        ctx.set_materialize_grads(False)  # unused outputs cost no zero-filled passes
        mem = posts[:, -1].clone() if x.shape[1] else mem0.clone()
        return spikes * amp, spikes, mem

    @staticmethod
    def backward(ctx, g_out, g_spikes, g_mem_final):
        mem0, beta, th, amp, mems, spikes, posts = ctx.saved_tensors
        need = ctx.needs_input_grad  # (x, mem0, beta, th, amp, ...)
        # surrogate derivatives; g is even, so g(-m - th) = g(m + th)
        g_lo = _surrogate_grad_(ctx.sname, ctx.slope, mems - th)  # g(m - th), (B, T, n)
        if ctx.ternary:  # s = H(m - th) - H(-m - th): ds/dm = g_lo + g_hi, ds/dth = g_hi - g_lo
            g_hi = _surrogate_grad_(ctx.sname, ctx.slope, mems + th)
            sg, sg_th, th_sign = g_lo + g_hi, g_hi.sub_(g_lo), 1.0
        else:  # ds/dm = g_lo, ds/dth = -g_lo
            sg, sg_th, th_sign = g_lo, g_lo, -1.0
        if g_out is None:
            g_s_out = torch.zeros_like(mems) if g_spikes is None else g_spikes
        else:
            g_s_out = g_out * amp
            if g_spikes is not None:
                g_s_out += g_spikes
        g_final = torch.zeros_like(mem0) if g_mem_final is None else g_mem_final
        g_x, g_s, post, g_mem0 = _lif_backward_loop(g_s_out, sg, th, beta, g_final)
        g_beta = g_th = g_amp = None
        if need[2]:  # sum_t dL/dm_t * m'_{t-1}, m'_{-1} = mem0
            g_beta = (g_x[:, 1:] * posts[:, :-1]).sum((0, 1)) + (g_x[:, 0] * mem0).sum(0)
        if need[3]:  # sum_t g_s * ds/dth - s * P  (sg_th is a temporary: reuse it)
            prod = sg_th.mul_(g_s) if ctx.ternary else torch.mul(g_s, sg_th)
            g_th = prod.addcmul_(spikes, post, value=-th_sign).sum((0, 1)) * th_sign
        if need[4]:
            if g_out is None:
                g_amp = torch.zeros_like(amp)
            else:
                g_amp = (g_out * spikes).sum((0, 1))
                if amp.numel() == 1:
                    g_amp = g_amp.sum().reshape(amp.shape)
        return g_x, g_mem0 if need[1] else None, g_beta, g_th, g_amp, None, None, None



# -- fixed-point trajectories (integer arithmetic of goose_neuro.fixed_point) -------------------
def _decay_trunc(d: Tensor, dbits: int) -> Tensor:
    """sign(d) * (|d| >> dbits): lava's decay, truncating toward zero (int64)."""
    return torch.sign(d) * (d.abs() >> dbits)


def _sub_fixed_loop(xm: Tensor, v: Tensor, keep: Tensor, vt: int, vmax: int, shift: int, dbits: int,
                    ternary: bool):
    """Subtract-reset integer neuron over T tokens. xm (B, T, n) int64 input mantissas, v (B, n)
    int64 state, keep (n,) = 2^D - dv. Returns (v before reset (B, T, n), spikes, final v)."""
    vpre = torch.empty_like(xm)
    spikes = torch.empty_like(xm)
    for t in range(xm.shape[1]):
        v = torch.clamp(_decay_trunc(v * keep, dbits) + (xm[:, t] << shift), -vmax, vmax)
        vpre[:, t] = v
        s = (v > vt).long()
        if ternary:
            s = s - (v < -vt).long()
        spikes[:, t] = s
        v = v - s * vt
    return vpre, spikes, v


def _tlif_fixed_loop(xm: Tensor, v: Tensor, u: Tensor, keep_v: Tensor, keep_u: Tensor, vt: int, vmax: int,
                     umax: int, shift: int, dbits: int):
    """lava-nc TernaryLIF (PyTernLifModelFixed) over T tokens, int64. keep_v = 2^D - dv,
    keep_u = 2^D - du - 1. Returns (v before reset, u, spikes (B, T, n) each, final v, final u)."""
    mems = torch.empty_like(xm)
    us = torch.empty_like(xm)
    spikes = torch.empty_like(xm)
    for t in range(xm.shape[1]):
        d = _decay_trunc(u * keep_u, dbits) + (xm[:, t] << shift)
        u = torch.where(d > umax, d - 2 * umax, torch.where(d <= -umax, d + 2 * umax, d))  # lava wraps u
        us[:, t] = u
        m = torch.clamp(_decay_trunc(v * keep_v, dbits) + u, -vmax, vmax)
        mems[:, t] = m
        s = (m > vt).long() - (m < -vt).long()
        spikes[:, t] = s
        v = torch.where(s != 0, torch.zeros_like(m), m)
    return mems, us, spikes, v, u


def _tlif_forward_loop(x: Tensor, v: Tensor, u: Tensor, beta: Tensor, alpha: Tensor, th: Tensor):
    """Float TernaryLIF over T tokens: returns (m_t before reset, u_t, s_t, final v, final u)."""
    mems = torch.empty_like(x)
    us = torch.empty_like(x)
    spikes = torch.empty_like(x)
    for t in range(x.shape[1]):
        u = torch.addcmul(x[:, t], alpha, u)  # beta_u * u + x_t
        us[:, t] = u
        m = torch.addcmul(u, beta, v)  # beta * v + u_t
        mems[:, t] = m
        s = spikes[:, t]
        torch.mul(torch.sign(m), m.abs() > th, out=s)
        v = m * (1.0 - s.abs())  # reset to zero
    return mems, us, spikes, v, u


try:  # TorchScript removes most per-token Python overhead; the plain loops are identical
    _sub_fixed_loop = torch.jit.script(_sub_fixed_loop)
    _tlif_fixed_loop = torch.jit.script(_tlif_fixed_loop)
    _tlif_forward_loop = torch.jit.script(_tlif_forward_loop)
except Exception:  # pragma: no cover
    pass


def _mantissas(x: Tensor, gain: Tensor, lim: int) -> Tensor:
    """x_mant = clamp(round_half_even(x * gain), +-lim) as int64 (float64 arithmetic)."""
    return torch.round(x.double() * gain).clamp(-lim, lim).long()


class _LIFScanFixed(torch.autograd.Function):
    """:class:`_LIFScan` with the integer neuron in the forward pass (straight-through backward).

    The state in and out is the integer membrane ``v`` (as floats). The backward pass is
    ``_LIFScan.backward`` on the integer trajectory in float units (``m = v / (2^S gain)``)."""

    @staticmethod
    def forward(ctx, x, v0, beta, th, amp, ternary: bool, sname: str, slope: float, fmt: NeuronFormat):
        gain = float(fmt.vth) / th.detach().double()  # (n,)
        keep = fmt.unit - torch.clamp(fmt.unit - torch.round(fmt.unit * beta.detach().double()), 0, fmt.unit - 1)
        xm = _mantissas(x.detach(), gain, fmt.x_limit)
        vpre, spikes_i, v = _sub_fixed_loop(xm, v0.detach().round().long(), keep.long(), fmt.vth << fmt.shift,
                                            fmt.v_max, fmt.shift, fmt.decay_bits, ternary)
        scale = gain * (1 << fmt.shift)  # integer units per float unit
        mems = (vpre.double() / scale).to(x.dtype)
        spikes = spikes_i.to(x.dtype)
        posts = mems - spikes * th  # m'_t in float units, as _LIFScan.backward reads it
        ctx.save_for_backward((v0.double() / scale).to(x.dtype), beta, th, amp, mems, spikes, posts)
        ctx.ternary, ctx.sname, ctx.slope, ctx.scale = ternary, sname, slope, scale.to(x.dtype)
        ctx.set_materialize_grads(False)
        return spikes * amp, spikes, v.to(x.dtype)

    @staticmethod
    def backward(ctx, g_out, g_spikes, g_v):
        g_mem = None if g_v is None else g_v * ctx.scale  # d v / d m = scale
        g_x, g_m0, g_beta, g_th, g_amp, *_ = _LIFScan.backward(ctx, g_out, g_spikes, g_mem)
        return (g_x, None if g_m0 is None else g_m0 / ctx.scale, g_beta, g_th, g_amp,
                None, None, None, None)


def _tlif_backward(ctx, g_out, g_spikes, g_v, g_u):
    """Backward of the TernaryLIF scan (float units), shared by the float and fixed forwards::

        dL/ds_t = a dL/dout_t;   sg_t = g(m_t - th) + g(-m_t - th)
        dL/dm_t = dL/ds_t sg_t + (1 - |s_t|) beta dL/dm_{t+1}       (detached reset)
        dL/du_t = dL/dm_t + beta_u dL/du_{t+1} = dL/dx_t
        dL/dbeta = sum_t dL/dm_t v_{t-1},  dL/dbeta_u = sum_t dL/du_t u_{t-1}
        dL/dth = sum_t dL/ds_t (g(-m_t - th) - g(m_t - th)),  dL/da = sum_t dL/dout_t s_t
    """
    v0, u0, beta, alpha, th, amp, mems, us, spikes = ctx.saved_tensors
    sg_pos = _surrogate_grad_(ctx.sname, ctx.slope, mems - th)
    sg_neg = _surrogate_grad_(ctx.sname, ctx.slope, -mems - th)
    sg_th = sg_neg - sg_pos
    sg = sg_pos.add_(sg_neg)
    g_s = g_out * amp
    if g_spikes is not None:
        g_s = g_s + g_spikes
    keep = 1.0 - spikes.abs()
    g_vf = g_v if g_v is not None else torch.zeros_like(v0)
    g_uf = g_u if g_u is not None else torch.zeros_like(u0)
    g_m, g_v0 = _linear_backward_loop(g_vf, keep, g_s * sg, beta)
    g_u_all, g_u0 = _linear_backward_loop(g_uf, torch.ones_like(keep), g_m, alpha)
    v_prev = torch.cat([v0[:, None], (mems * keep)[:, :-1]], 1)
    u_prev = torch.cat([u0[:, None], us[:, :-1]], 1)
    g_beta = (g_m * v_prev).sum().reshape(beta.shape)
    g_alpha = (g_u_all * u_prev).sum().reshape(alpha.shape)
    g_th = (g_s * sg_th).sum((0, 1))
    g_amp = (g_out * spikes).sum((0, 1))
    if amp.numel() == 1:
        g_amp = g_amp.sum().reshape(amp.shape)
    return g_u_all, g_v0, g_u0, g_beta, g_alpha, g_th, g_amp


class _TLIFScan(torch.autograd.Function):
    """Float TernaryLIF over T tokens in one autograd node (backward: :func:`_tlif_backward`)."""

    @staticmethod
    def forward(ctx, x, v0, u0, beta, alpha, th, amp, sname: str, slope: float):
        mems, us, spikes, v, u = _tlif_forward_loop(x, v0, u0, beta, alpha, th)
        ctx.save_for_backward(v0, u0, beta, alpha, th, amp, mems, us, spikes)
        ctx.sname, ctx.slope = sname, slope
        return spikes * amp, spikes, v, u

    @staticmethod
    def backward(ctx, g_out, g_spikes, g_v, g_u):
        return (*_tlif_backward(ctx, g_out, g_spikes, g_v, g_u), None, None)


class _TLIFScanFixed(torch.autograd.Function):
    """Integer TernaryLIF forward (lava-nc's fixed-point model), straight-through backward.
    State in and out: the integer compartments ``v``, ``u`` (as floats)."""

    @staticmethod
    def forward(ctx, x, v0, u0, beta, alpha, th, amp, sname: str, slope: float, fmt: NeuronFormat):
        gain = float(fmt.vth) / th.detach().double()
        unit = fmt.unit
        dv = torch.clamp(unit - torch.round(unit * beta.detach().double()), 0, unit - 1)
        du = torch.clamp(unit - 1 - torch.round(unit * alpha.detach().double()), 0, unit - 1)
        xm = _mantissas(x.detach(), gain, fmt.x_limit)
        mems_i, us_i, spikes_i, v, u = _tlif_fixed_loop(
            xm, v0.detach().round().long(), u0.detach().round().long(), (unit - dv).long(), (unit - du - 1).long(),
            fmt.vth << fmt.shift, fmt.v_max, 1 << (fmt.state_bits - 1), fmt.shift, fmt.decay_bits)
        scale = gain * (1 << fmt.shift)
        to_f = lambda a: (a.double() / scale).to(x.dtype)  # noqa: E731  integer -> float units
        spikes = spikes_i.to(x.dtype)
        ctx.save_for_backward(to_f(v0), to_f(u0), beta, alpha, th, amp, to_f(mems_i), to_f(us_i), spikes)
        ctx.sname, ctx.slope, ctx.scale = sname, slope, scale.to(x.dtype)
        return spikes * amp, spikes, v.to(x.dtype), u.to(x.dtype)

    @staticmethod
    def backward(ctx, g_out, g_spikes, g_v, g_u):
        sc = ctx.scale
        g_x, g_v0, g_u0, g_beta, g_alpha, g_th, g_amp = _tlif_backward(
            ctx, g_out, g_spikes, None if g_v is None else g_v * sc, None if g_u is None else g_u * sc)
        return g_x, g_v0 / sc, g_u0 / sc, g_beta, g_alpha, g_th, g_amp, None, None, None


# -- neuron modules -------------------------------------------------------------------------------
class _Neuron(snntorch.SpikingNeuron):
    """What both neuron classes share: learnable per-channel threshold and amplitude (snnTorch's
    ``threshold`` and ``graded_spikes_factor``), the surrogate, the spike mode and the optional
    fixed-point format. Subclasses define the state layout and the update."""

    kind = ""

    def __init__(self, n: int, mode: str, surrogate_name: str, slope: float, threshold_init: float,
                 amplitude_mode: str, reset: str) -> None:
        if mode not in ("ternary", "binary", "none"):
            raise ConfigError(f"spike mode must be ternary, binary or none, got {mode!r}")
        amp_shape = (n,) if amplitude_mode == "channel" else (1,)
        super().__init__(
            threshold=torch.full((n,), float(threshold_init)),
            spike_grad=make_surrogate(surrogate_name, slope),
            learn_threshold=True,
            reset_mechanism=reset,
            graded_spikes_factor=torch.ones(amp_shape),
            learn_graded_spikes_factor=True,
        )
        # snnTorch keeps a class-wide list of every neuron for its init_hidden
        # mode; we pass state explicitly, so do not keep this instance alive there.
        if snntorch.SpikingNeuron.instances and snntorch.SpikingNeuron.instances[-1] is self:
            snntorch.SpikingNeuron.instances.pop()
        self.n = n
        self.mode = mode
        self._sname, self._slope = surrogate_name, float(slope)
        self._fmt: NeuronFormat | None = None

    # The effective parameters are computed in float32 whatever the module's dtype, so the integer
    # neuron that rounds them is the same in float32 training, a float64 check and the export.
    @property
    def th(self) -> Tensor:  # (n,)  positive threshold, float32
        return self.threshold.float().abs() + 1e-4

    @property
    def amplitude(self) -> Tensor:  # (n,) or (1,)
        return self.graded_spikes_factor

    @property
    def state_width(self) -> int:
        """Width of this population's state tensor (B, state_width)."""
        return self.n

    def init_mem(self, batch: int, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch, self.state_width, device=device, dtype=dtype)

    def fire(self, mem: Tensor) -> Tensor:  # type: ignore[override]
        """Spike function (values {-1,0,1} or {0,1}) with surrogate gradients."""
        th = self.th.to(mem.dtype)
        s = self.spike_grad(mem - th)
        if self.mode == "ternary":
            s = s - self.spike_grad(-mem - th)
        return s.to(mem.dtype)

    # -- fixed point ------------------------------------------------------------------------
    def set_fixed_point(self, fmt: NeuronFormat | None) -> None:
        """Run this population with the integer neuron of ``fmt`` (``None``: float neuron).
        The integer parameters follow the learned ones (see :meth:`fixed_params`)."""
        if fmt is not None:
            if self.mode != "ternary":
                raise ConfigError(f"fixed-point neurons exist for ternary populations only, not {self.mode!r}")
            if fmt.neuron != self.kind:
                raise ConfigError(f"fixed-point format for {fmt.neuron!r} neurons given to a {self.kind!r} population")
        self._fmt = fmt

    @property
    def fixed_point(self) -> bool:
        return self._fmt is not None

    @property
    def fixed_format(self) -> NeuronFormat | None:
        return self._fmt

    def decays(self) -> dict[str, Tensor]:
        """The population's decay factors by name (``beta``; ``beta_u`` for TernaryLIF)."""
        raise NotImplementedError

    def step(self, x: Tensor, mem: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """One token: ``x`` (B, n), state ``mem`` (B, state_width) -> (out (B, n), spikes (B, n),
        new state). ``goose_neuro.fast_step`` calls this on every population.

        The update rule of :meth:`forward` at T=1: a subclass's :meth:`_direct_step` (no token
        loop, no autograd node) when it has one, else :meth:`forward` on a one-token sequence, which
        also serves fixed-point neurons and steps that need gradients."""
        if self.mode == "none":
            return x, x, mem
        if type(self)._direct_step is _Neuron._direct_step or self._needs_forward(x, mem):
            out, s, new = self.forward(x[:, None], mem)
            return out[:, 0], s[:, 0], new
        if x.dtype != mem.dtype:
            dtype = torch.promote_types(x.dtype, mem.dtype)
            x, mem = x.to(dtype), mem.to(dtype)
        return self._direct_step(x, mem)

    def _direct_step(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Float one-token update, ``x`` and ``mem`` in one dtype, no gradients (see :meth:`step`)."""
        raise NotImplementedError

    def _needs_forward(self, x: Tensor, mem: Tensor) -> bool:
        """A one-token step must go through :meth:`forward`: fixed-point neurons, or gradients wanted."""
        return self._fmt is not None or (torch.is_grad_enabled() and (
            x.requires_grad or mem.requires_grad or any(p.requires_grad for p in self.parameters())))

    def _step_constants(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
        """(decays..., th, -th, amplitude) in ``dtype`` for :meth:`step`; cached until a
        parameter changes (in-place updates bump the tensor version, reloads change the storage)."""
        compiling = torch.compiler.is_compiling()
        if not compiling:
            ps = tuple(self._parameters.values())  # the neuron's own parameters (it has no submodules)
            key = (dtype, device, sum(p._version for p in ps), ps[0].data_ptr())
            cached = getattr(self, "_step_cache", None)
            if cached is not None and cached[0] == key:
                return cached[1]
        with torch.no_grad():
            th = self.th.to(device, dtype)
            consts = (*(d.to(device, dtype) for d in self.decays().values()), th, -th,
                      self.amplitude.to(device, dtype))
        if not compiling:
            self._step_cache = (key, consts)
        return consts

    @torch.no_grad()
    def fixed_params(self, fmt: NeuronFormat | None = None) -> dict:
        """Integer parameters of this population under ``fmt`` (default: its own format), from
        :mod:`goose_neuro.fixed_point`: ``gain`` (n,) float64, ``dv`` (and ``du``) int64, ``vth``,
        ``x_bits``."""
        fmt = fmt or self._fmt
        if fmt is None:
            raise ConfigError("no fixed-point format: give one or call set_fixed_point first")
        d = self.decays()
        out = {"gain": fmt.gain(self.th.detach().cpu().numpy()), "dv": fmt.dv(d["beta"].detach().cpu().numpy()),
               "vth": fmt.vth, "x_bits": fmt.x_bits}
        if "beta_u" in d:
            out["du"] = fmt.du(d["beta_u"].detach().cpu().numpy())
        return out


class SpikeLIF(_Neuron):
    """A population of ``n`` subtract-reset LIF neurons emitting ternary, binary or no spikes.

    Example::

        lif = SpikeLIF(4, mode="ternary")
        mem = lif.init_mem(batch=2)                      # (B, n)
        out, spikes, mem = lif(torch.randn(2, 7, 4), mem)  # x: (B, T, n)

    Inputs: ``x`` (B, T, n) and ``mem`` (B, n). Outputs: ``out`` (B, T, n) =
    amplitude * spikes, ``spikes`` (B, T, n) in {-1, 0, 1} (or {0, 1}), and the
    new membrane (B, n). For mode ``none``: ``out = x``, ``spikes = x`` and the
    membrane is returned unchanged.
    """

    kind = "subtract"

    def __init__(
        self,
        n: int,
        mode: str = "ternary",
        surrogate_name: str = "atan",
        slope: float = 2.0,
        threshold_init: float = 0.5,
        beta_init: float = 0.5,
        amplitude_mode: str = "shared",
    ) -> None:
        super().__init__(n, mode, surrogate_name, slope, threshold_init, amplitude_mode, "subtract")
        self.beta_logit = nn.Parameter(torch.full((n,), math.log(beta_init / (1 - beta_init))))

    @property
    def beta(self) -> Tensor:  # (n,), float32
        return torch.sigmoid(self.beta_logit.float())

    def decays(self) -> dict[str, Tensor]:
        return {"beta": self.beta}

    def forward(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Fast path: one fused autograd node for the whole token loop."""
        if self.mode == "none":
            return x, x, mem
        dtype = torch.promote_types(x.dtype, mem.dtype)
        args = (x.to(dtype), mem.to(dtype), self.beta.to(dtype), self.th.to(dtype), self.amplitude.to(dtype),
                self.mode == "ternary", self._sname, self._slope)
        if self._fmt is not None:
            return _LIFScanFixed.apply(*args, self._fmt)
        return _LIFScan.apply(*args)

    def _direct_step(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One token: ``x`` (B, n), ``mem`` (B, n) -> (out, spikes, new mem), each (B, n)."""
        beta, th, nth, amp = self._step_constants(x.dtype, x.device)
        m = torch.addcmul(x, beta, mem)  # (B, n)
        s = torch.gt(m, th, out=torch.empty_like(m))
        if self.mode == "ternary":
            s.sub_(torch.lt(m, nth, out=torch.empty_like(m)))
        return s * amp, s, torch.addcmul(m, s, th, value=-1.0)

    def forward_reference(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Readable reference: token loop through snnTorch's surrogate autograd Functions."""
        if self.mode == "none":
            return x, x, mem
        beta, th = self.beta.to(x.dtype), self.th.to(x.dtype)
        spikes = []
        for t in range(x.shape[1]):  # tokens are the time axis
            mem = beta * mem + x[:, t]  # (B, n)
            s = self.fire(mem)  # (B, n)
            mem = mem - s * th
            spikes.append(s)
        s_all = torch.stack(spikes, dim=1)  # (B, T, n)
        return s_all * self.amplitude, s_all, mem


BETA_U_MAX = 0.75  # keeps the integer current inside 24 bits without wrapping (16-bit inputs)


class TernaryLIFNeuron(_Neuron):
    """A population of ``n`` lava-nc ``TernaryLIF`` neurons (see the module docstring).

    One voltage decay ``beta`` and one current decay ``beta_u`` per population (lava's
    ``TernaryLIF`` has one ``dv`` and one ``du`` per process); per-neuron thresholds (they fold
    into the host's input gain on hardware) and a shared or per-channel amplitude.
    ``beta_u = min(|beta_u_raw|, 0.75)`` starts at 0 (``u_t = x_t``: a single compartment).

    State: (B, 2n) = ``[v, u]``. Example::

        lif = TernaryLIFNeuron(4)
        st = lif.init_mem(batch=2)                        # (B, 2n)
        out, spikes, st = lif(torch.randn(2, 7, 4), st)
    """

    kind = "ternary_lif"

    def __init__(self, n: int, mode: str = "ternary", surrogate_name: str = "atan", slope: float = 2.0,
                 threshold_init: float = 0.5, beta_init: float = 0.5, amplitude_mode: str = "shared") -> None:
        if mode == "binary":
            raise ConfigError("the ternary_lif neuron emits ternary spikes: use spike_mode ternary (or none)")
        super().__init__(n, mode, surrogate_name, slope, threshold_init, amplitude_mode, "zero")
        self.beta_logit = nn.Parameter(torch.full((1,), math.log(beta_init / (1 - beta_init))))
        self.beta_u_raw = nn.Parameter(torch.zeros(1))

    @property
    def beta(self) -> Tensor:  # (1,), float32
        return torch.sigmoid(self.beta_logit.float())

    @property
    def beta_u(self) -> Tensor:  # (1,), float32
        return self.beta_u_raw.float().abs().clamp(max=BETA_U_MAX)

    @property
    def state_width(self) -> int:
        return 2 * self.n

    def decays(self) -> dict[str, Tensor]:
        return {"beta": self.beta, "beta_u": self.beta_u}

    def forward(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.mode == "none":
            return x, x, mem
        dtype = torch.promote_types(x.dtype, mem.dtype)
        v0, u0 = mem.to(dtype)[:, :self.n], mem.to(dtype)[:, self.n:]
        args = (x.to(dtype), v0, u0, self.beta.to(dtype), self.beta_u.to(dtype), self.th.to(dtype),
                self.amplitude.to(dtype), self._sname, self._slope)
        if self._fmt is not None:
            out, s, v, u = _TLIFScanFixed.apply(*args, self._fmt)
        else:
            out, s, v, u = _TLIFScan.apply(*args)
        return out, s, torch.cat([v, u], 1)

    def _direct_step(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One token: ``x`` (B, n), state ``[v, u]`` (B, 2n) -> (out, spikes, new state)."""
        beta, beta_u, th, nth, amp = self._step_constants(x.dtype, x.device)
        u = torch.addcmul(x, beta_u, mem[:, self.n:])  # beta_u * u + x
        m = torch.addcmul(u, beta, mem[:, :self.n])  # beta * v + u
        s = torch.gt(m, th, out=torch.empty_like(m))
        s.sub_(torch.lt(m, nth, out=torch.empty_like(m)))
        return s * amp, s, torch.cat([m * (1.0 - s.abs()), u], 1)  # reset to zero

    def forward_reference(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Readable reference through snnTorch's surrogate Functions (reset detached)."""
        if self.mode == "none":
            return x, x, mem
        v, u = mem[:, :self.n], mem[:, self.n:]
        beta, alpha = self.beta.to(x.dtype), self.beta_u.to(x.dtype)
        spikes = []
        for t in range(x.shape[1]):
            u = alpha * u + x[:, t]
            m = beta * v + u
            s = self.fire(m)
            v = m * (1 - s.detach().abs())
            spikes.append(s)
        s_all = torch.stack(spikes, dim=1)
        return s_all * self.amplitude, s_all, torch.cat([v, u], 1)


NEURON_CLASSES = {"subtract": SpikeLIF, "ternary_lif": TernaryLIFNeuron}
