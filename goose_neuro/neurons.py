"""Leaky integrate-and-fire neurons with ternary, binary or no spikes.

Built on snnTorch: :class:`SpikeLIF` subclasses ``snntorch.SpikingNeuron`` (its
threshold and graded-spike-factor parameters, subtract reset) and uses
snnTorch's surrogate-gradient functions. Unlike snnTorch's own neurons, the
membrane is passed in and returned explicitly (no hidden state in the module),
because tokens are the time axis and the state must travel with the model's
recurrent state.

Update rule, per channel c and token t (``beta = sigmoid(beta_logit)``,
``th = |threshold|``)::

    mem_t = beta * mem_{t-1} + x_t
    ternary: s_t = H(mem_t - th) - H(-mem_t - th)        in {-1, 0, +1}
    binary:  s_t = H(mem_t - th)                          in {0, 1}
    mem_t <- mem_t - s_t * th                             (subtract reset)
    out_t = a * s_t                                       (a = amplitude)

H is the Heaviside step in the forward pass and the chosen surrogate's
derivative in the backward pass. Mode ``none`` is the dense ablation:
``out_t = x_t`` and the membrane is untouched.

Fixed-point inference (:meth:`SpikeLIF.set_fixed_point`) replaces this update by the
integer neuron of a Loihi package (12-bit decay, input mantissa, 24-bit state; the
equations are in ``goose_neuro.export.int_ref``), so the PyTorch model runs the neuron
arithmetic that the hardware runs. It is for inference only (no gradients).
"""

from __future__ import annotations

import math

import snntorch
import torch
from snntorch import surrogate
from torch import Tensor, nn

from goose_neuro.errors import ConfigError


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


try:  # TorchScript removes most per-token Python overhead (about 1.5x on CPU); optional
    _lif_forward_loop = torch.jit.script(_lif_forward_loop)
    _lif_backward_loop = torch.jit.script(_lif_backward_loop)
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


class SpikeLIF(snntorch.SpikingNeuron):
    """A population of ``n`` LIF neurons emitting ternary, binary or no spikes.

    Example::

        lif = SpikeLIF(4, mode="ternary")
        mem = lif.init_mem(batch=2)                      # (B, n)
        out, spikes, mem = lif(torch.randn(2, 7, 4), mem)  # x: (B, T, n)

    Inputs: ``x`` (B, T, n) and ``mem`` (B, n). Outputs: ``out`` (B, T, n) =
    amplitude * spikes, ``spikes`` (B, T, n) in {-1, 0, 1} (or {0, 1}), and the
    new membrane (B, n). For mode ``none``: ``out = x``, ``spikes = x`` and the
    membrane is returned unchanged.
    """

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
        if mode not in ("ternary", "binary", "none"):
            raise ConfigError(f"spike mode must be ternary, binary or none, got {mode!r}")
        amp_shape = (n,) if amplitude_mode == "channel" else (1,)
        super().__init__(
            threshold=torch.full((n,), float(threshold_init)),
            spike_grad=make_surrogate(surrogate_name, slope),
            learn_threshold=True,
            reset_mechanism="subtract",
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
        self.beta_logit = nn.Parameter(torch.full((n,), math.log(beta_init / (1 - beta_init))))
        self._fixed: dict | None = None  # fixed-point neuron spec (set_fixed_point), None = float LIF

    # -- parameters as used by the update rule -------------------------------
    @property
    def beta(self) -> Tensor:  # (n,)
        return torch.sigmoid(self.beta_logit)

    @property
    def th(self) -> Tensor:  # (n,)  positive threshold
        return self.threshold.abs() + 1e-4

    @property
    def amplitude(self) -> Tensor:  # (n,) or (1,)
        return self.graded_spikes_factor

    def init_mem(self, batch: int, device=None, dtype=None) -> Tensor:
        return torch.zeros(batch, self.n, device=device, dtype=dtype)

    def fire(self, mem: Tensor) -> Tensor:  # type: ignore[override]
        """Spike function (values {-1,0,1} or {0,1}) with surrogate gradients."""
        th = self.th
        s = self.spike_grad(mem - th)
        if self.mode == "ternary":
            s = s - self.spike_grad(-mem - th)
        return s.to(mem.dtype)

    def set_fixed_point(self, spec: dict | None) -> None:
        """Run this population as a package's fixed-point neuron, or (``None``) as the float LIF.

        ``spec``: ``gain`` (n,) float64 input gain ``2^fx / th``, ``dv`` (n,) 12-bit decays,
        ``vth`` threshold mantissa, ``x_bits`` input mantissa width (what ``IntModel.pops``
        holds for a float64-host package). Per token::

            x_mant = clamp(round(x * gain), +-(2^(x_bits-1) - 1))
            v = clip24(trunc(v * (4096 - dv) / 4096) + (x_mant << 6))
            s = [v > vth << 6] - [v < -(vth << 6)];  v -= s * (vth << 6)

        The membrane passed in and out stays in float units: ``mem = v / (64 * gain)``
        (exact round trips in float64)."""
        if spec is None:
            self._fixed = None
            return
        if self.mode != "ternary":
            raise ConfigError(f"fixed-point neurons exist for ternary populations only, not {self.mode!r}")
        gain = torch.as_tensor(spec["gain"], dtype=torch.float64)
        dv = torch.as_tensor(spec["dv"], dtype=torch.int64)
        if gain.shape != (self.n,) or dv.shape != (self.n,) or not torch.all(gain > 0):
            raise ConfigError(f"fixed-point spec for {self.n} neurons has gain {tuple(gain.shape)} "
                              f"and dv {tuple(dv.shape)} (gain must be > 0)")
        self._fixed = {"gain": gain, "keep": 4096 - dv, "vt": int(spec["vth"]) << 6,
                       "lim": (1 << (int(spec["x_bits"]) - 1)) - 1}

    @property
    def fixed_point(self) -> bool:
        return self._fixed is not None

    def _forward_fixed(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if torch.is_grad_enabled() and (x.requires_grad or mem.requires_grad):
            raise ConfigError("fixed-point neurons are for inference: run under torch.no_grad()")
        f = self._fixed
        gain, keep = f["gain"].to(x.device), f["keep"].to(x.device)
        vmax = (1 << 23) - 1
        xm = torch.round(x.double() * gain).clamp(-f["lim"], f["lim"]).long()  # (B, T, n)
        v = torch.round(mem.double() * gain * 64).long()  # (B, n) integer state
        spikes = torch.empty_like(xm)
        for t in range(x.shape[1]):
            d = v * keep
            v = (torch.sign(d) * (d.abs() >> 12) + (xm[:, t] << 6)).clamp(-vmax, vmax)
            s = (v > f["vt"]).long() - (v < -f["vt"]).long()
            v = v - s * f["vt"]
            spikes[:, t] = s
        s_all = spikes.to(x.dtype)
        return s_all * self.amplitude.to(x.dtype), s_all, (v.double() / (gain * 64)).to(mem.dtype)

    def forward(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Fast path: one fused autograd node for the whole token loop."""
        if self.mode == "none":
            return x, x, mem
        if self.fixed_point:
            return self._forward_fixed(x, mem)
        dtype = torch.promote_types(x.dtype, mem.dtype)
        return _LIFScan.apply(
            x.to(dtype), mem.to(dtype), self.beta.to(dtype), self.th.to(dtype), self.amplitude.to(dtype),
            self.mode == "ternary", self._sname, self._slope,
        )

    def step(self, x: Tensor, mem: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """One token: ``x`` (B, n), ``mem`` (B, n) -> (out (B, n), spikes (B, n), new mem (B, n)).

        The update rule of :meth:`forward` at T=1 without the sequence machinery (no token
        loop, no autograd node), for decoding; ``goose_neuro.fast_step`` calls it on every
        population, so another neuron class joins the fast path by implementing this
        signature. When gradients are needed it runs :meth:`forward` (surrogate gradients)."""
        if self.mode == "none":
            return x, x, mem
        if self._fixed is not None or (torch.is_grad_enabled() and (x.requires_grad or mem.requires_grad
                                                                    or self.beta_logit.requires_grad)):
            out, s, new = self.forward(x[:, None], mem)
            return out[:, 0], s[:, 0], new
        if x.dtype != mem.dtype:
            dtype = torch.promote_types(x.dtype, mem.dtype)
            x, mem = x.to(dtype), mem.to(dtype)
        beta, th, nth, amp = self._step_constants(x.dtype, x.device)
        m = torch.addcmul(x, beta, mem)  # (B, n)
        s = torch.gt(m, th, out=torch.empty_like(m))
        if self.mode == "ternary":
            s.sub_(torch.lt(m, nth, out=torch.empty_like(m)))
        return s * amp, s, torch.addcmul(m, s, th, value=-1.0)

    def _step_constants(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(beta, th, -th, amplitude) in ``dtype``; cached until a parameter changes (in-place
        updates bump the tensor version, reloads change the storage)."""
        compiling = torch.compiler.is_compiling()
        if not compiling:
            p = (self.beta_logit, self.threshold, self.graded_spikes_factor)
            key = (dtype, device, p[0]._version + p[1]._version + p[2]._version, p[0].data_ptr())
            cached = getattr(self, "_step_cache", None)
            if cached is not None and cached[0] == key:
                return cached[1]
        with torch.no_grad():
            th = self.th.to(device, dtype)
            consts = (self.beta.to(device, dtype), th, -th, self.amplitude.to(device, dtype))
        if not compiling:
            self._step_cache = (key, consts)
        return consts

    def forward_reference(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Readable reference: token loop through snnTorch's surrogate autograd Functions."""
        if self.mode == "none":
            return x, x, mem
        beta, th = self.beta, self.th
        spikes = []
        for t in range(x.shape[1]):  # tokens are the time axis
            mem = beta * mem + x[:, t]  # (B, n)
            s = self.fire(mem)  # (B, n)
            mem = mem - s * th
            spikes.append(s)
        s_all = torch.stack(spikes, dim=1)  # (B, T, n)
        return s_all * self.amplitude, s_all, mem
