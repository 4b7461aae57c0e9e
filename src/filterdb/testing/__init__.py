"""Ground-truth generators for tests and benchmarks (need torch and scikit-learn, imported lazily)."""

from __future__ import annotations

from ._family import CHILDREN, FAMILY_VERSION, FamilyMember, FamilyPair, family_pairs, load_family, make_family

__all__ = ["CHILDREN", "FAMILY_VERSION", "FamilyMember", "FamilyPair", "family_pairs", "load_family", "make_family"]
