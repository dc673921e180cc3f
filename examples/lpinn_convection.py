"""The convection failure mode and its Lagrangian fix: a PINN and an LPINN on u_t + beta u_x = 0.

A PINN on (x, t) fails at beta = 50 (Krishnapriyan et al., NeurIPS 2021): it settles on a smooth,
wrong solution. Along characteristics (Mojgani et al., CMAME 2023) the same problem is dX/dt = beta,
dU/dt = 0, which a small network learns; its prediction is mapped back to the Eulerian grid.
For your own convective PDE ``u_t + v(u, x, t) u_x = nu u_xx`` pass
``form=pinns.LagrangianForm(velocity, nu, velocity_scale)`` to ``pinns.solve_lpinn``.

    python examples/lpinn_convection.py            # ~1.5 minutes on 2 CPU cores
    python examples/lpinn_convection.py --beta 100
"""

import argparse

from pdejax import pinns, problems


def main(beta: float = 50.0, pinn_steps: int = 2000, lpinn_steps: int = 1000, progress: bool = True) -> dict:
    problem = problems.get("convection", beta=beta)
    # the paper's vanilla PINN: 4 x 50 tanh MLP, initial and periodic conditions as loss terms
    settings = pinns.settings_for(
        problem, "adam+lbfgs", width=50, depth=4, constraints="soft", steps=pinn_steps, lbfgs_steps=pinn_steps // 2
    )
    pinn = pinns.solve(problem, settings, progress=progress)
    lpinn = pinns.solve_lpinn(
        problem, pinns.lpinn_settings(steps=lpinn_steps, lbfgs_steps=lpinn_steps), progress=progress
    )
    out = {"pinn": pinn.result.rel_l2, "lpinn": lpinn.result.rel_l2}
    print(f"convection beta={beta:g}: rel. L2 PINN {out['pinn']:.2e}, LPINN {out['lpinn']:.2e}")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beta", type=float, default=50.0)
    ap.add_argument("--steps", type=int, default=1000, help="LPINN Adam steps (and L-BFGS iterations)")
    args = ap.parse_args()
    main(args.beta, lpinn_steps=args.steps)
