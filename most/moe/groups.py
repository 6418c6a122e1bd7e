"""Modality expert groups: which routed experts of a MoE layer serve each modality's tokens.

``experts.groups`` (:class:`~most.moe.config.ExpertsConfig`) names them per modality of the token
layout, either as

- sizes, ``{text: 4, speech: 2, music: 2}``: contiguous ranges in the layout's modality order
  (unequal sizes allowed), or
- expert index lists, ``{text: [0, 2, 4, 6], speech: [1, 3, 5, 7]}`` (MoST's arbitrary lists).

Unset, the E experts split into G equal contiguous ranges in modality order (MoST: text
``[0, E/2)``, speech ``[E/2, E)``). The groups partition the routed experts: each expert serves
exactly one modality, none is left idle; the shared experts, separate modules, serve every token.
``upcycle`` gives every group a copy of all E pretrained experts, so its groups are fixed:
group g owns ``[g*E, (g+1)*E)``.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Global expert ids of each modality's group, in the layout's modality order.
Groups = tuple[tuple[int, ...], ...]
#: What ``experts.groups`` may hold: sizes or expert index lists, keyed by modality name.
GroupSpec = dict[str, int] | dict[str, list[int]]


def check_spec(spec: GroupSpec) -> None:
    """Refuse, in one line, a groups setting that is wrong whatever the model: empty, sizes mixed
    with lists, a size below 1, an empty list, a negative id, an expert in two groups."""
    if not spec:
        raise ValueError("experts.groups: give at least one modality (or leave it unset)")
    sizes = [isinstance(v, int) and not isinstance(v, bool) for v in spec.values()]
    lists = [isinstance(v, list | tuple) for v in spec.values()]
    if not (all(sizes) or all(lists)):
        raise ValueError(
            f"experts.groups: give every modality a size or every modality an expert list, "
            f"not a mix: {spec}"
        )
    if all(sizes):
        small = {m: n for m, n in spec.items() if n < 1}
        if small:
            raise ValueError(f"experts.groups: empty groups {small}; every size must be >= 1")
        return
    seen: dict[int, str] = {}
    for modality, ids in spec.items():
        if not ids:
            raise ValueError(f"experts.groups: {modality!r} lists no experts")
        for i in ids:
            if not isinstance(i, int) or isinstance(i, bool) or i < 0:
                raise ValueError(f"experts.groups: {modality!r} lists {i!r}, not an expert id >= 0")
            if i in seen:
                raise ValueError(
                    f"experts.groups: expert {i} is in both {seen[i]!r} and {modality!r}"
                )
            seen[i] = modality


def resolve_groups(
    spec: GroupSpec | None, modalities: Sequence[str], n_experts: int, init: str
) -> Groups:
    """The new layer's expert ids per modality (in ``modalities`` order) for a base layer of
    ``n_experts`` routed experts; any mismatch with the layout or the model is refused in one line.
    """
    g = len(modalities)
    if init == "upcycle":
        if spec is not None:
            raise ValueError(
                "experts.groups: upcycle gives every group a copy of all "
                f"{n_experts} experts; set groups with init: split"
            )
        return tuple(tuple(range(i * n_experts, (i + 1) * n_experts)) for i in range(g))
    if spec is None:
        if n_experts % g:
            raise ValueError(
                f"split init needs the {n_experts} experts divisible by {g} groups "
                "(or experts.groups with their sizes)"
            )
        eg = n_experts // g
        return tuple(tuple(range(i * eg, (i + 1) * eg)) for i in range(g))
    check_spec(spec)
    if set(spec) != set(modalities):
        missing = [m for m in modalities if m not in spec]
        extra = [m for m in spec if m not in modalities]
        raise ValueError(
            f"experts.groups must name each modality of the layout {list(modalities)} once "
            f"(missing {missing}, unknown {extra})"
        )
    values = [spec[m] for m in modalities]
    if isinstance(values[0], int):
        if sum(values) != n_experts:
            raise ValueError(
                f"experts.groups: sizes {dict(zip(modalities, values, strict=True))} sum to "
                f"{sum(values)}, the model has {n_experts} routed experts per layer"
            )
        ends = [sum(values[: i + 1]) for i in range(g)]
        return tuple(tuple(range(end - n, end)) for n, end in zip(values, ends, strict=True))
    out = [i for ids in values for i in ids if i >= n_experts]
    if out:
        raise ValueError(
            f"experts.groups: experts {sorted(out)} out of range; the model has {n_experts} "
            f"routed experts per layer (ids 0-{n_experts - 1})"
        )
    idle = sorted(set(range(n_experts)) - {i for ids in values for i in ids})
    if idle:
        raise ValueError(f"experts.groups: experts {idle} are in no group; assign every expert")
    return tuple(tuple(sorted(ids)) for ids in values)
