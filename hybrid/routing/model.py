"""The learned router: from a query (and optional extra signals) to how much the large model helps.

Each labelled example is a query with an outcome in one of four classes, over (small model
correct, large model correct): `both_wrong`, `strong_wins` (only the large one right),
`weak_wins` (only the small one right), `both_right`. A single "was the small model good enough"
label (`small_ok`, from feedback) maps to `both_right` when 1 and to `strong_wins` when 0: a good
small answer means escalating gains nothing, a bad one is what escalation is for.

The model is a two-level stack, trained with scikit-learn and scored with numpy alone:

- level 1, computed for training rows without their own label (leave-one-out, out-of-fold):
  the outcome rates among the k most similar training queries (MiniLM cosine, several k), the
  probabilities of a 4-class logistic regression on the embedding, the 55 query features of
  `features.query_feature_vector`, and named extra features (`retrieval_confidence` by default,
  0 when absent);
- level 2: histogram gradient boosting over those columns (`hgb`, optionally a bag of seeds), a
  standardised 4-class logistic regression (`lr`), or their 50/50 mixture (`blend`).

The research's MMLU-subject classifier is left out: its gain on the random split was within seed
noise, it gained nothing on unseen subjects, and it needs a subject label per query
(docs/benchmarks.md).

`need_large` = P(strong_wins) − P(weak_wins): the expected accuracy gained by sending the query
to the large model; route large when it is at or above the threshold. The artifact is a folder
with `router.npz` (numpy arrays only) and `router.json` (version, training data, label scheme,
feature names, metrics, threshold).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hybrid import filecache
from hybrid.filecache import FileCache, mtimes
from hybrid.routing.features import QUERY_VECTOR_NAMES, query_feature_vector

ARTIFACT_VERSION = 1
CLASSES = ("both_wrong", "strong_wins", "weak_wins", "both_right")
BOTH_WRONG, STRONG_WINS, WEAK_WINS, BOTH_RIGHT = range(4)
LABEL_SCHEME = (
    "4 classes over (small correct, large correct): class = 2*small + large, i.e. 0 both_wrong, "
    "1 strong_wins, 2 weak_wins, 3 both_right. A single feedback label small_ok=1 counts as both_right, "
    "small_ok=0 as strong_wins."
)
SCORE_DEFINITION = "need_large = P(strong_wins) - P(weak_wins); route large when need_large >= threshold"
THRESHOLD_SEMANTICS = (
    "threshold.value is compared with need_large (in [-1, 1]): at or above it the query starts on the large "
    "model. `hybrid router calibrate` chooses it for a target quality or a maximum large-model share."
)
DEFAULT_EXTRA_FEATURES = ("retrieval_confidence",)
# Until `hybrid router calibrate` sets one: large only where it very probably fixes the answer.
UNCALIBRATED_THRESHOLD = 0.5
_UNSEEN = -30.0  # logit of a class absent from the training labels: probability ~1e-13


def outcome_class(small_correct: Any, large_correct: Any) -> np.ndarray:
    """Outcome class per query: 2 * small correct + large correct."""
    return np.asarray(small_correct, dtype=int) * 2 + np.asarray(large_correct, dtype=int)


@dataclass(frozen=True)
class Example:
    """One labelled query: both models' correctness, or a single `small_ok` label from feedback."""

    query: str
    small_correct: bool | None = None
    large_correct: bool | None = None
    small_ok: int | None = None
    context: str = ""
    """The previous turn, when the query is a follow-up; read together with the query."""
    weight: float = 1.0
    group: str | None = None
    """A topic or source; with `holdout="group"`, examples of one group never inform each other."""
    extra: Mapping[str, float] = field(default_factory=dict)
    """Values of the model's extra features (e.g. retrieval_confidence); absent ones count as 0."""

    def __post_init__(self) -> None:
        has_pair = self.small_correct is not None and self.large_correct is not None
        if has_pair == (self.small_ok is not None):
            raise ValueError("an example needs small_correct and large_correct, or small_ok, not both")
        if self.small_ok is not None and self.small_ok not in (0, 1):
            raise ValueError(f"small_ok must be 0 or 1, not {self.small_ok!r}")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"weight must be a positive number, not {self.weight!r}")

    @property
    def outcome(self) -> int:
        """The example's class (single labels mapped as the module docstring says)."""
        if self.small_ok is not None:
            return BOTH_RIGHT if self.small_ok else STRONG_WINS
        return int(outcome_class(self.small_correct, self.large_correct))

    @property
    def text(self) -> str:
        """What the router reads: the previous turn, then the query."""
        return routing_text(self.query, self.context)


def routing_text(query: str, context: str = "") -> str:
    """The text a query is judged by: its previous turn (if any) and the query, one per line."""
    return f"{context}\n{query}" if context else query


@dataclass(frozen=True)
class TrainConfig:
    """How a router is trained. The defaults are the research recipe for MMLU-like data."""

    ks: tuple[int, ...] = (5, 10, 30, 100, 300)
    """Neighbourhood sizes of the kNN outcome rates; () turns the kNN columns off."""
    use_embedding: bool = True
    """Read the query embedding at all (kNN and the embedding LR); False: hand features only."""
    embedding_layer: int = 3
    """MiniLM layer whose mean-pooled vector the router reads (`retrieval.embeddings.EARLY_LAYER`:
    better routing than the last layer for half the compute, see there)."""
    embedding_c: float = 0.05
    level2: Literal["auto", "hgb", "lr", "blend"] = "auto"
    """auto: LR under `auto_hgb_min` examples, boosting from there (on GSM8K's 1,000 training rows
    boosting routed worse than LR; on MMLU's 11,000 it is the better one: docs/benchmarks.md)."""
    auto_hgb_min: int = 2000
    hgb_iterations: int = 600
    hgb_learning_rate: float = 0.025
    hgb_leaves: int = 7
    hgb_min_leaf: int = 150
    """Coarse trees (7 leaves of at least 150 rows) generalise to unseen topics: a topic's own quirks
    cannot fill a leaf, so on MMLU with subjects held out they route better than 15 leaves of 50
    rows, at no cost on the random split. Coarser still helped unseen subjects a little more but
    cost the random split; choosing the size per training set by inner cross-validation was noisy
    and far slower (figures in docs/benchmarks.md)."""
    hgb_l2: float = 1.0
    bags: int = 1
    """Boosted models with different seeds, averaged (their early-stopping splits differ)."""
    lr_cs: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    """Level-2 LR: inverse regularisation strengths, one chosen by inner cross-validation."""
    holdout: Literal["text", "group"] = "text"
    """What must not inform a training row's level-1 features: rows with the same text (duplicates),
    or rows of the same group (train for queries of unseen groups)."""
    inner_folds: int = 5
    seed: int = 0
    reference_dtype: Literal["float32", "float16", "int8"] = "int8"
    """How the reference embeddings are stored (int8: one scale per row, about 1/4 of float32)."""
    extra_features: tuple[str, ...] = DEFAULT_EXTRA_FEATURES


@dataclass(frozen=True)
class RouterScore:
    """The router's judgement of one query."""

    need_large: float
    """P(strong_wins) − P(weak_wins): expected accuracy gained by the large model, in [-1, 1]."""
    p_small_ok: float
    """P(the small model answers correctly)."""
    probabilities: dict[str, float]
    """Each outcome class's probability."""
    top_signals: list[tuple[str, float]]
    """The signals that moved need_large most, with their contribution, largest first."""


def decide_with_model(score: RouterScore, threshold: float) -> tuple[Literal["small", "large"], str]:
    """Starting tier for a scored query, and the reason in words."""
    drivers = ", ".join(f"{name} {value:+.2f}" for name, value in score.top_signals[:3]) or "no signal"
    if score.need_large >= threshold:
        return "large", f"learned need_large {score.need_large:.2f} >= {threshold:.2f} ({drivers})"
    return "small", f"learned need_large {score.need_large:.2f} < {threshold:.2f} ({drivers})"


# ---------------------------------------------------------------------------------------------
# Numpy building blocks (shared by training and inference, so both compute the same numbers)
# ---------------------------------------------------------------------------------------------


def knn_rates(
    queries: np.ndarray,
    reference: np.ndarray,
    weighted_onehot: np.ndarray,
    weights: np.ndarray,
    ks: Sequence[int],
    *,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
    block: int = 1024,
) -> np.ndarray:
    """Per query and k: the weighted outcome rates of its k most similar reference rows, and their
    mean similarity (5 columns per k). `exclude` = (query ids, reference ids): equal ids never meet."""
    if not ks:  # kNN columns turned off
        return np.zeros((len(queries), 0))
    k_max = min(max(ks), len(reference) - 1 if exclude is not None else len(reference))
    out = []
    for start in range(0, len(queries), block):
        sims = queries[start : start + block] @ reference.T
        if exclude is not None:
            sims[exclude[0][start : start + block, None] == exclude[1][None, :]] = -np.inf
        # Row-wise gathers by plain indexing: `take_along_axis` builds the same index arrays
        # per call, a cost that dominates at one query per request.
        rows = np.arange(len(sims))[:, None]
        top = np.argpartition(-sims, k_max - 1, axis=1)[:, :k_max]
        top_sims = sims[rows, top]
        order = np.argsort(-top_sims, axis=1, kind="stable")
        top = top[rows, order]
        top_sims = top_sims[rows, order]
        valid = np.isfinite(top_sims)  # fewer rows than k left after exclusion: count only real ones
        # Running sums over the neighbours, nearest first, read at each k: one pass for every k.
        mass = np.cumsum(weights[top] * valid, axis=1)
        rates = np.cumsum(weighted_onehot[top] * valid[:, :, None], axis=1)
        similarity = np.cumsum(np.where(valid, top_sims, 0.0), axis=1)
        columns = []
        for wanted in ks:
            k = min(wanted, k_max)
            columns.append(rates[:, k - 1] / np.maximum(mass[:, k - 1, None], 1e-12))
            columns.append(similarity[:, k - 1, None] / k)
        out.append(np.hstack(columns))
    return np.vstack(out) if out else np.zeros((0, 5 * len(ks)))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _linear_proba(
    x: np.ndarray, mu: np.ndarray, sd: np.ndarray, coef: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    return _softmax(((x - mu) / sd) @ coef.T + bias)


def _forest_traverse(nodes: dict[str, np.ndarray], offsets: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
    """Node index per (row, tree) at each depth, root first, until every tree is at a leaf."""
    current = np.broadcast_to(offsets, (len(x), len(offsets))).copy()
    path = [current]
    rows = np.arange(len(x))[:, None]
    for _ in range(128):
        leaf = nodes["is_leaf"][current]
        if leaf.all():
            break
        values = x[rows, nodes["feature"][current]]
        go_left = np.where(
            np.isnan(values), nodes["missing_left"][current], values <= nodes["threshold"][current]
        )
        child = np.where(go_left, nodes["left"][current], nodes["right"][current]).astype(np.int64) + offsets
        current = np.where(leaf, current, child)
        path.append(current)
    return path


@dataclass
class _Forest:
    """Exported gradient-boosted trees: every node of every tree in flat arrays."""

    nodes: dict[str, np.ndarray]
    offsets: np.ndarray
    tree_class: np.ndarray
    baseline: np.ndarray
    classes: np.ndarray
    """The outcome classes the forest knows; one logit each (binary: [0, raw])."""
    n_features: int

    def logits(self, x: np.ndarray) -> np.ndarray:
        leaves = _forest_traverse(self.nodes, self.offsets, x)[-1]
        n_out = len(self.baseline)
        raw = np.tile(self.baseline, (len(x), 1))
        for c in range(n_out):
            raw[:, c] += self.nodes["value"][leaves[:, self.tree_class == c]].sum(1)
        if len(self.classes) == 2:
            return np.hstack([np.zeros((len(x), 1)), raw])
        return raw

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per row, logit and feature: how much that feature's splits moved the logit (Saabas).

        Inner nodes carry their value on the leaves' scale, so the moves along a path add up to the
        leaf's value minus the root's.
        """
        path = _forest_traverse(self.nodes, self.offsets, x)
        n_rows, n_out, n_features = len(x), len(self.baseline), self.n_features
        out = np.zeros(n_rows * n_out * n_features)
        rows = np.arange(n_rows)[:, None]
        for parent, child in itertools.pairwise(path):
            delta = self.nodes["value"][child] - self.nodes["value"][parent]
            index = (rows * n_out + self.tree_class) * n_features + self.nodes["feature"][parent]
            np.add.at(out, index[parent != child], delta[parent != child])
        return out.reshape(n_rows, n_out, n_features)


@dataclass
class _Linear:
    mu: np.ndarray
    sd: np.ndarray
    coef: np.ndarray
    bias: np.ndarray

    def proba(self, x: np.ndarray) -> np.ndarray:
        return _linear_proba(x, self.mu, self.sd, self.coef, self.bias)


def _quantize(vectors: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    if dtype == "float32":
        return {"reference": vectors.astype(np.float32)}
    if dtype == "float16":
        return {"reference": vectors.astype(np.float16)}
    scale = np.maximum(np.abs(vectors).max(axis=1, keepdims=True), 1e-12) / 127.0
    return {
        "reference": np.round(vectors / scale).astype(np.int8),
        "reference_scale": scale.astype(np.float32),
    }


def _dequantize(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    reference = arrays["reference"].astype(np.float32)
    if "reference_scale" in arrays:
        reference *= arrays["reference_scale"]
    return reference


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


class RouterModel:
    """A trained router: numpy arrays and their description. Build with `train` or `load`."""

    def __init__(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        self.arrays = dict(arrays)
        self.meta = dict(meta)
        self.ks = tuple(int(k) for k in self.meta["ks"])
        self.use_embedding = bool(self.meta["use_embedding"])
        self.extra_features = tuple(self.meta["extra_features"])
        # Routers saved before this was recorded: assume every extra feature may matter.
        self.informative_extras = tuple(self.meta.get("informative_extras", self.extra_features))
        self.level2 = self.meta["level2"]
        # Routers saved before the layer was recorded read MiniLM's last layer.
        self.embedding_layer = int(self.meta.get("embedding_layer") or 6)
        a = self.arrays
        if self.use_embedding:
            self.reference = _dequantize(a)
            weights = a["reference_weight"].astype(np.float64)
            self.reference_weight = weights
            self.reference_onehot = np.eye(4)[a["reference_class"].astype(np.int64)] * weights[:, None]
            self.embedding_lr = _Linear(a["emb_mu"], a["emb_sd"], a["emb_coef"], a["emb_bias"])
        self.forest = None
        if self.level2 in ("hgb", "blend"):
            nodes = {k[len("tree_") :]: a[k] for k in a if k.startswith("tree_") and k != "tree_offsets"}
            self.forest = _Forest(
                nodes,
                a["tree_offsets"],
                a["tree_class"],
                a["hgb_baseline"],
                a["hgb_classes"],
                len(self.column_names),
            )
        self.level2_lr = None
        if self.level2 in ("lr", "blend"):
            self.level2_lr = _Linear(a["l2_mu"], a["l2_sd"], a["l2_coef"], a["l2_bias"])
        # The explanation's signals, in order of first appearance, and each column's signal: summed
        # per signal in one pass instead of naming ~80 columns on every question.
        signal_of = [_signal_name(name) for name in self.column_names]
        self._signals = list(dict.fromkeys(signal_of))
        self._signal_index = np.array([self._signals.index(name) for name in signal_of], dtype=np.intp)

    # -- features ---------------------------------------------------------------------------

    @property
    def column_names(self) -> list[str]:
        """Names of the level-2 input columns, in order."""
        return list(self.meta["columns"])

    @property
    def threshold(self) -> float:
        """The calibrated need_large threshold; uncalibrated, `UNCALIBRATED_THRESHOLD`."""
        return float((self.meta.get("threshold") or {}).get("value", UNCALIBRATED_THRESHOLD))

    @staticmethod
    def text_columns(texts: Sequence[str]) -> np.ndarray:
        """The level-2 columns read from the texts alone (`query_feature_vector`), one row each."""
        return np.stack([query_feature_vector(t) for t in texts]).astype(np.float64)

    def level1(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray | None,
        extras: Sequence[Mapping[str, float] | None] | None = None,
        text_columns: np.ndarray | None = None,
    ) -> np.ndarray:
        """The level-2 input matrix of new queries (never part of the training data).
        `text_columns`: the texts' `text_columns`, when already computed."""
        parts = []
        if self.use_embedding:
            if embeddings is None:
                raise ValueError("this router reads query embeddings: pass them")
            e = np.asarray(embeddings, dtype=np.float32).reshape(len(texts), -1)
            parts.append(knn_rates(e, self.reference, self.reference_onehot, self.reference_weight, self.ks))
            parts.append(self.embedding_lr.proba(e))
        parts.append(self.text_columns(texts) if text_columns is None else text_columns)
        parts.append(_extra_matrix(extras, self.extra_features, len(texts)))
        return np.hstack(parts).astype(np.float64)

    def proba_from_level1(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n × 4) from level-2 inputs."""
        if self.level2 == "lr":
            return self.level2_lr.proba(x)  # type: ignore[union-attr]
        p = _full_proba(_softmax(self.forest.logits(x)), self.forest.classes)  # type: ignore[union-attr]
        if self.level2 == "blend":
            p = 0.5 * p + 0.5 * self.level2_lr.proba(x)  # type: ignore[union-attr]
        return p

    def proba(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray | None,
        extras: Sequence[Mapping[str, float] | None] | None = None,
    ) -> np.ndarray:
        """Class probabilities of many queries (n × 4, in `CLASSES` order)."""
        return self.proba_from_level1(self.level1(texts, embeddings, extras))

    def need_large(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray | None,
        extras: Sequence[Mapping[str, float] | None] | None = None,
    ) -> np.ndarray:
        """need_large of many queries."""
        p = self.proba(texts, embeddings, extras)
        return p[:, STRONG_WINS] - p[:, WEAK_WINS]

    def score(
        self,
        query_text: str,
        embedding: np.ndarray | None = None,
        extra_features: Mapping[str, float] | None = None,
        text_columns: np.ndarray | None = None,
    ) -> RouterScore:
        """Judge one query. `embedding`: its MiniLM vector (computed here when None and needed);
        `text_columns`: its `text_columns([query_text])`, when already computed."""
        if self.use_embedding and embedding is None:
            from retrieval.embeddings import embed

            embedding = embed([query_text], layer=self.embedding_layer)[0]
        x = self.level1([query_text], embedding, [extra_features], text_columns)
        p = self.proba_from_level1(x)[0]
        return RouterScore(
            need_large=float(p[STRONG_WINS] - p[WEAK_WINS]),
            p_small_ok=float(p[WEAK_WINS] + p[BOTH_RIGHT]),
            probabilities={name: float(v) for name, v in zip(CLASSES, p, strict=True)},
            top_signals=self._top_signals(x, p),
        )

    def _top_signals(self, x: np.ndarray, p: np.ndarray, n: int = 3) -> list[tuple[str, float]]:
        """Signals by their first-order effect on need_large (tree paths or linear terms)."""
        # d need_large / d logit_c for a softmax: p1 (1[c=1] - p_c) - p2 (1[c=2] - p_c)
        grad = -p * (p[STRONG_WINS] - p[WEAK_WINS])
        grad[STRONG_WINS] += p[STRONG_WINS]
        grad[WEAK_WINS] -= p[WEAK_WINS]
        effect = np.zeros(x.shape[1])
        if self.forest is not None:
            contributions = self.forest.contributions(x)[0]
            full = np.zeros((4, x.shape[1]))
            if len(self.forest.classes) == 2:  # one logit, of the second class against the first
                full[self.forest.classes[1]] = contributions[0]
            else:
                full[self.forest.classes] = contributions
            effect += (0.5 if self.level2 == "blend" else 1.0) * grad @ full
        if self.level2_lr is not None:
            linear = self.level2_lr.coef * ((x[0] - self.level2_lr.mu) / self.level2_lr.sd)
            effect += (0.5 if self.level2 == "blend" else 1.0) * grad @ linear
        # Column by column into its signal's sum, in column order (as a loop over them would add).
        by_signal = np.bincount(self._signal_index, weights=effect, minlength=len(self._signals))
        ranked = sorted(zip(self._signals, by_signal.tolist(), strict=True), key=lambda item: -abs(item[1]))
        return [(name, round(value, 4)) for name, value in ranked[:n] if abs(value) > 1e-6]

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        """Write `router.npz` and `router.json` into the folder `path` (created if needed)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path / "router.npz", **self.arrays)
        (path / "router.json").write_text(json.dumps(self.meta, indent=1) + "\n")
        filecache.forget(path)
        return path

    def save_meta(self, path: Path) -> Path:
        """Rewrite only `router.json` in the folder `path` (e.g. after calibration)."""
        target = Path(path) / "router.json"
        target.write_text(json.dumps(self.meta, indent=1) + "\n")
        filecache.forget(Path(path))
        return target

    @classmethod
    def load(cls, path: Path) -> RouterModel:
        """The router saved in folder `path`, read once per process (again when its files change)."""
        folder = Path(path)
        return _LOADED.get(
            folder, lambda: mtimes(folder / "router.npz", folder / "router.json"), lambda: cls._read(folder)
        )

    @classmethod
    def _read(cls, folder: Path) -> RouterModel:
        meta = json.loads((folder / "router.json").read_text())
        if meta.get("version") != ARTIFACT_VERSION:
            raise ValueError(
                f"{folder}: router artifact version {meta.get('version')}, expected {ARTIFACT_VERSION}"
            )
        with np.load(folder / "router.npz", allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        return cls(arrays, meta)

    def with_meta(self, **changes: Any) -> RouterModel:
        """The same model with some `router.json` fields changed (e.g. a calibrated threshold)."""
        return RouterModel(self.arrays, {**self.meta, **changes})


_LOADED: FileCache[RouterModel] = FileCache()


def _full_proba(p: np.ndarray, classes: np.ndarray) -> np.ndarray:
    full = np.zeros((len(p), 4))
    full[:, classes.astype(np.int64)] = p
    return full


def _extra_matrix(
    extras: Sequence[Mapping[str, float] | None] | None, names: Sequence[str], n: int
) -> np.ndarray:
    out = np.zeros((n, len(names)))
    for i, values in enumerate(extras or []):
        for j, name in enumerate(names):
            out[i, j] = float((values or {}).get(name, 0.0) or 0.0)
    return out


def _signal_name(column: str) -> str:
    """Explanation name of a level-2 column: kNN and embedding columns read as one signal each."""
    if column.startswith("knn_"):
        return "similar past queries"
    if column.startswith("embedding_"):
        return "embedding model"
    return column


def level1_column_names(config: TrainConfig) -> list[str]:
    """The level-2 input columns a config produces, in order."""
    names: list[str] = []
    if config.use_embedding:
        for k in config.ks:
            names += [f"knn_{k}_{c}" for c in CLASSES] + [f"knn_{k}_similarity"]
        names += [f"embedding_{c}" for c in CLASSES]
    return names + list(QUERY_VECTOR_NAMES) + list(config.extra_features)


def gain_auc(score: np.ndarray, outcome: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the cumulative expected-gain curve, above a random order's (0: random, higher: better).

    Queries sorted by score, each adds its gain (+1 strong_wins, −1 weak_wins, 0 otherwise) per
    unit of weight; the area over the large-model share 0..1 is APGR's, unnormalised, over every
    threshold. Works for single labels too; used to compare candidates on the same data.
    """
    w = np.ones(len(score)) if weights is None else np.asarray(weights, dtype=float)
    gain = np.where(outcome == STRONG_WINS, 1.0, np.where(outcome == WEAK_WINS, -1.0, 0.0)) * w
    order = np.argsort(-np.asarray(score), kind="stable")
    share = np.concatenate([[0.0], np.cumsum(w[order]) / w.sum()])
    curve = np.concatenate([[0.0], np.cumsum(gain[order]) / w.sum()])
    return float(np.trapezoid(curve, share) - curve[-1] / 2)
