"""common.finetune.metrics against independent computations: hand-derived cases, formulas written here, sklearn."""

import collections
import math
import random
import sys

import numpy as np
import pytest

from common.finetune import metrics as m


# --------------------------------------------------------------------------------------------------- accuracy


def test_accuracy_hand_cases():
    assert m.accuracy([1, 2, 3], [1, 2, 3]) == 1.0
    assert m.accuracy(["a", "b"], ["b", "a"]) == 0.0
    assert m.accuracy(["a", "b", "c", "d"], ["a", "x", "c", "x"]) == 0.5


def test_accuracy_takes_arrays_and_matches_numpy():
    rng = np.random.default_rng(0)
    pred, true = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert m.accuracy(pred, true) == pytest.approx(float(np.mean(pred == true)))
    assert m.accuracy(pred.tolist(), true) == pytest.approx(float(np.mean(pred == true)))


# ------------------------------------------------------------------------------------------ classification


def _confusion_scores(pred, true, labels):
    """Macro / micro scores from a confusion matrix C[true, pred], written independently of the module:
    precision_i = C[i,i] / column sum, recall_i = C[i,i] / row sum, F1 = harmonic mean, 0 for any 0 / 0."""
    k = len(labels)
    at = {label: i for i, label in enumerate(labels)}
    c = np.zeros((k, k))
    for p, t in zip(pred, true):
        c[at[t], at[p]] += 1

    def div(a, b):
        return a / b if b else 0.0

    precision = [div(c[i, i], c[:, i].sum()) for i in range(k)]
    recall = [div(c[i, i], c[i, :].sum()) for i in range(k)]
    f1 = [div(2 * p * r, p + r) for p, r in zip(precision, recall)]
    return {
        "accuracy": np.trace(c) / c.sum(),
        "f1_macro": np.mean(f1),
        "f1_micro": np.trace(c) / c.sum(),  # single-label: micro P = micro R = accuracy
        "precision_macro": np.mean(precision),
        "recall_macro": np.mean(recall),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_scores_match_confusion_matrix(seed):
    rng = random.Random(seed)
    labels = ["neg", "neu", "pos", "never"]  # "never" occurs nowhere: it must still count (as 0) in the macros
    true = [rng.choice(labels[:3]) for _ in range(60)]
    pred = [t if rng.random() < 0.6 else rng.choice(labels[:3]) for t in true]
    got = m.classification_scores(pred, true, labels=labels)
    want = _confusion_scores(pred, true, labels)
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key]), key
        assert isinstance(got[key], float)
    # The absent class lowers the macros by exactly 3/4 compared with leaving it out.
    without = m.classification_scores(pred, true)
    assert got["f1_macro"] == pytest.approx(without["f1_macro"] * 3 / 4)


@pytest.mark.parametrize("seed", [0, 1])
def test_classification_scores_match_sklearn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels = list(range(6))
    true = rng.integers(0, 5, 80)  # label 5 never occurs
    pred = np.where(rng.random(80) < 0.5, true, rng.integers(0, 5, 80))
    pred[:3] = 4  # some class predicted but rare
    got = m.classification_scores(pred, true, labels=labels)
    kw = dict(labels=labels, zero_division=0)
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(true, pred))
    assert got["f1_macro"] == pytest.approx(metrics.f1_score(true, pred, average="macro", **kw))
    assert got["f1_micro"] == pytest.approx(metrics.f1_score(true, pred, average="micro", **kw))
    assert got["precision_macro"] == pytest.approx(metrics.precision_score(true, pred, average="macro", **kw))
    assert got["recall_macro"] == pytest.approx(metrics.recall_score(true, pred, average="macro", **kw))


def test_classification_scores_extremes():
    perfect = m.classification_scores([0, 1, 2, 1], [0, 1, 2, 1])
    assert all(v == 1.0 for v in perfect.values())
    wrong = m.classification_scores([1, 0, 1], [0, 1, 0])
    assert all(v == 0.0 for v in wrong.values())
    # Hand case: true [a a b], pred [a b b]. a: P 1/1, R 1/2, F1 2/3. b: P 1/2, R 1/1, F1 2/3.
    hand = m.classification_scores(["a", "b", "b"], ["a", "a", "b"])
    assert hand["precision_macro"] == pytest.approx(0.75)
    assert hand["recall_macro"] == pytest.approx(0.75)
    assert hand["f1_macro"] == pytest.approx(2 / 3)
    assert hand["accuracy"] == hand["f1_micro"] == pytest.approx(2 / 3)


def test_classification_scores_label_errors():
    with pytest.raises(ValueError, match="predictions has labels not in labels"):
        m.classification_scores([0, 7], [0, 1], labels=[0, 1])
    with pytest.raises(ValueError, match="references has labels not in labels"):
        m.classification_scores([0, 1], [0, 7], labels=[0, 1])
    with pytest.raises(ValueError, match="labels has duplicates"):
        m.classification_scores([0, 1], [0, 1], labels=[0, 1, 1])
    with pytest.raises(ValueError, match="labels is empty"):
        m.classification_scores([0, 1], [0, 1], labels=[])


# --------------------------------------------------------------------------------------------- multi-label


def _multilabel_by_hand(pred, true):
    """Per-label and pooled F1 from counted tp / fp / fn, and exact-row accuracy."""
    f1s = []
    pooled = np.zeros(3)
    for j in range(true.shape[1]):
        tp = int(np.sum(pred[:, j] & true[:, j]))
        fp = int(np.sum(pred[:, j] & ~true[:, j]))
        fn = int(np.sum(~pred[:, j] & true[:, j]))
        pooled += (tp, fp, fn)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    tp, fp, fn = pooled
    rows = np.mean([np.array_equal(p, t) for p, t in zip(pred, true)])
    return {"subset_accuracy": rows, "f1_micro": 2 * tp / (2 * tp + fp + fn), "f1_macro": np.mean(f1s)}


def test_multilabel_scores_match_counts_and_sklearn():
    rng = np.random.default_rng(3)
    true = rng.random((50, 5)) < 0.3
    true[:, 4] = False  # a label never true ...
    pred = np.where(rng.random((50, 5)) < 0.8, true, ~true)
    pred[:, 4] = False  # ... and never predicted: F1 0 in the macro
    pred[:10] = true[:10]  # some exact rows
    got = m.multilabel_scores(pred, true)
    want = _multilabel_by_hand(pred, true)
    for key in want:
        assert got[key] == pytest.approx(want[key]), key
    metrics = pytest.importorskip("sklearn.metrics")
    assert got["subset_accuracy"] == pytest.approx(metrics.accuracy_score(true, pred))
    assert got["f1_micro"] == pytest.approx(metrics.f1_score(true, pred, average="micro", zero_division=0))
    assert got["f1_macro"] == pytest.approx(metrics.f1_score(true, pred, average="macro", zero_division=0))


def test_multilabel_scores_extremes_and_int_input():
    true = np.array([[1, 0, 1], [0, 1, 0]])
    assert m.multilabel_scores(true, true.astype(bool)) == {"subset_accuracy": 1.0, "f1_micro": 1.0, "f1_macro": 1.0}
    assert all(v == 0.0 for v in m.multilabel_scores(1 - true, true).values())
    # Hand case: row 0 right, row 1 misses label 1. tp: [1, 0, 1], fp 0, fn: [0, 1, 0].
    # micro 2*2 / (4 + 1) = 0.8; macro (1 + 0 + 1) / 3.
    got = m.multilabel_scores([[1, 0, 1], [0, 0, 0]], true)
    assert got == pytest.approx({"subset_accuracy": 0.5, "f1_micro": 0.8, "f1_macro": 2 / 3})


def test_multilabel_scores_errors():
    ok = np.zeros((2, 3), bool)
    with pytest.raises(ValueError, match="predicted must be bool or 0 / 1"):
        m.multilabel_scores(np.full((2, 3), 0.7), ok)
    with pytest.raises(ValueError, match="reference must be 2-D"):
        m.multilabel_scores(ok, np.zeros(3, bool))
    with pytest.raises(ValueError, match="predicted has 2 examples but reference has 3"):
        m.multilabel_scores(ok, np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="labels per example"):
        m.multilabel_scores(ok, np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="predicted is empty"):
        m.multilabel_scores(np.zeros((0, 3), bool), np.zeros((0, 3), bool))


# ---------------------------------------------------------------------------------------------- entities


def test_entity_scores_one_of_two_found():
    reference = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "O"]]
    # PER found exactly, LOC missed (tagged O): tp 1, predicted 1, true 2 -> P 1/1, R 1/2, F1 2/3.
    # Tokens: 5 of 6 equal -> accuracy 5/6. Per type: PER F1 1, LOC F1 0 (no LOC predicted).
    predicted = [["B-PER", "I-PER", "O", "O"], ["O", "O"]]
    got = m.entity_scores(predicted, reference)
    assert got == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "accuracy": 5 / 6,
                                 "f1_PER": 1.0, "f1_LOC": 0.0})


def test_entity_scores_wrong_span_and_type():
    reference = [["B-PER", "I-PER", "O", "B-LOC", "O"]]
    # PER span cut short (B-PER I-PER -> B-PER O) is a miss and a false alarm; LOC called ORG is the same.
    # tp 0, predicted 2, true 2 -> all 0; ORG appears only in predictions but still gets a key.
    predicted = [["B-PER", "O", "O", "B-ORG", "O"]]
    got = m.entity_scores(predicted, reference)
    assert got == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 3 / 5,
                                 "f1_PER": 0.0, "f1_LOC": 0.0, "f1_ORG": 0.0})


def test_entity_scores_perfect_and_no_entities():
    tags = [["B-MISC", "I-MISC", "O"], ["B-PER"]]
    assert m.entity_scores(tags, tags) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "accuracy": 1.0,
                                           "f1_MISC": 1.0, "f1_PER": 1.0}
    # No entity anywhere: the entity ratios are 0 / 0, reported as 0; no per-type key.
    assert m.entity_scores([["O", "O"]], [["O", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                                         "accuracy": 1.0}


def _iob2_chunks(sentences):
    """(sentence, start, end, type) of every entity in well-formed IOB2 tags (each I-X continues a B-X / I-X)."""
    chunks = set()
    for s, tags in enumerate(sentences):
        start = None
        for i, tag in enumerate(tags + ["O"]):
            if start is not None and not tag.startswith("I-"):
                chunks.add((s, start, i, tags[start][2:]))
                start = None
            if tag.startswith("B-"):
                start = i
    return chunks


def _random_iob2(rng, n):
    tags, previous = [], "O"
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            tag = "O"
        elif r < 0.75 and previous != "O":
            tag = "I-" + previous[2:]
        else:
            tag = "B-" + rng.choice(["PER", "LOC", "ORG"])
        tags.append(tag)
        previous = tag
    return tags


@pytest.mark.parametrize("seed", [0, 1])
def test_entity_scores_match_chunk_counting(seed):
    rng = random.Random(seed)
    reference = [_random_iob2(rng, rng.randint(1, 12)) for _ in range(30)]
    predicted = [_random_iob2(rng, len(r)) if rng.random() < 0.5 else list(r) for r in reference]
    true, pred = _iob2_chunks(reference), _iob2_chunks(predicted)
    tp = len(true & pred)
    got = m.entity_scores(predicted, reference)
    assert got["precision"] == pytest.approx(tp / len(pred))
    assert got["recall"] == pytest.approx(tp / len(true))
    assert got["f1"] == pytest.approx(2 * tp / (len(pred) + len(true)))
    flat = [(p, r) for ps, rs in zip(predicted, reference) for p, r in zip(ps, rs)]
    assert got["accuracy"] == pytest.approx(sum(p == r for p, r in flat) / len(flat))
    for kind in {c[3] for c in true | pred}:
        t = {c for c in true if c[3] == kind}
        p = {c for c in pred if c[3] == kind}
        assert got[f"f1_{kind}"] == pytest.approx(2 * len(t & p) / (len(t) + len(p))), kind


def test_entity_scores_errors():
    with pytest.raises(ValueError, match="sentence 1: predicted has 1 tags but reference has 2"):
        m.entity_scores([["O"], ["O"]], [["O"], ["O", "O"]])
    with pytest.raises(ValueError, match="predicted has 1 examples but reference has 2"):
        m.entity_scores([["O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="reference is empty"):
        m.entity_scores([["O"]], [])
    with pytest.raises(ValueError, match="predicted must be a list of sentences"):
        m.entity_scores(["O", "B-PER"], [["O"], ["B-PER"]])


# -------------------------------------------------------------------------------------------------- ROUGE


def test_rouge_extremes():
    same = m.rouge_scores(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert same == pytest.approx(dict.fromkeys(["rouge1", "rouge2", "rougeL", "rougeLsum"], 1.0))
    assert all(v == 0.0 for v in m.rouge_scores(["dogs bark loudly"], ["a cat sat"]).values())


def test_rouge_hand_case_and_mean():
    # ref "the cat sat", pred "the cat": unigrams P 2/2 R 2/3 -> F 0.8; bigrams {the cat} vs {the cat, cat sat}:
    # P 1, R 1/2 -> F 2/3; LCS 2 -> F 0.8 (one sentence, so rougeLsum equals rougeL).
    got = m.rouge_scores(["the cat"], ["the cat sat"])
    assert got == pytest.approx({"rouge1": 0.8, "rouge2": 2 / 3, "rougeL": 0.8, "rougeLsum": 0.8})
    # The mean over examples: one perfect and one disjoint pair average to 0.5.
    mean = m.rouge_scores(["the cat", "red"], ["the cat", "blue"])
    assert mean == pytest.approx(dict.fromkeys(got, 0.5))


def test_rouge_uses_stemmer():
    # Porter stems: cats -> cat, running -> run; with stemming the texts are identical.
    assert m.rouge_scores(["cats running"], ["cat run"])["rouge1"] == pytest.approx(1.0)


def test_rouge_lsum_scores_per_sentence():
    # Sentences swapped: rougeL's single LCS covers one sentence (2 of 4 tokens -> 0.5); rougeLsum matches each
    # reference sentence to its twin (union LCS 4 of 4 -> 1.0), whether the sentences end in ". " or "\n".
    got = m.rouge_scores(["alpha beta. gamma delta."], ["gamma delta.\nalpha beta."])
    assert got["rougeL"] == pytest.approx(0.5)
    assert got["rougeLsum"] == pytest.approx(1.0)
    # Words swapped across two sentences: one LCS of "alpha beta" and "beta alpha" is 1 of 2 tokens (0.5); split
    # into sentences "beta." and "alpha.", each word is its own sentence's LCS and the union covers both (1.0).
    # This holds only if the ". " split is applied, to the prediction and to the reference alike.
    for prediction, reference in (("beta. alpha.", "alpha beta"), ("alpha beta", "beta. alpha.")):
        got = m.rouge_scores([prediction], [reference])
        assert got["rougeL"] == pytest.approx(0.5)
        assert got["rougeLsum"] == pytest.approx(1.0), (prediction, reference)


def test_sentence_split():
    assert m._one_sentence_per_line("One. Two!  Three?\nFour\n\n five") == "One.\nTwo!\nThree?\nFour\nfive"
    assert m._one_sentence_per_line("3.5 million") == "3.5 million"  # no whitespace after the dot


def test_rouge_errors():
    with pytest.raises(ValueError, match="predictions has 2 examples but references has 1"):
        m.rouge_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="predictions is empty"):
        m.rouge_scores([], [])
    with pytest.raises(ValueError, match=r"references\[0\] must be a str"):
        m.rouge_scores(["a"], [["a"]])
    with pytest.raises(ValueError, match="predictions must be a sequence"):
        m.rouge_scores("a", "a")


# -------------------------------------------------------------------------------------------------- SQuAD


@pytest.mark.parametrize("raw, normalized", [
    ("The Cat!", "cat"),
    ("  an   apple,  a pear ", "apple pear"),
    ("Theory of the Thing", "theory of thing"),  # "the" only as a whole word
    ("U.S.A.", "usa"),
    ("", ""),
])
def test_normalize_answer(raw, normalized):
    assert m.normalize_answer(raw) == normalized


def test_squad_v1_cases():
    references = {"q1": ["cat"], "q2": ["the cat", "a dog in the park"], "q3": ["Paris"]}
    # q1: "The Cat!" normalises to "cat": EM 1, F1 1.
    # q2: "cat sat" vs "cat" -> P 1/2 R 1 F1 2/3; vs "dog in park" -> 0; EM 0. Max over golds: 2/3.
    # q3: "London": 0, 0.
    got = m.squad_scores({"q1": "The Cat!", "q2": "cat sat", "q3": "London"}, references)
    assert got == pytest.approx({"exact_match": 1 / 3, "f1": (1 + 2 / 3) / 3, "total": 3})
    assert isinstance(got["total"], int)
    perfect = m.squad_scores({"q1": "cat", "q2": "A dog in the park.", "q3": "paris"}, references)
    assert perfect == {"exact_match": 1.0, "f1": 1.0, "total": 3}


def test_squad_token_f1_counts_repeats():
    # "cat cat dog" vs "cat dog dog": common multiset {cat, dog} = 2 -> P 2/3, R 2/3, F1 2/3.
    assert m.squad_scores({"q": "cat cat dog"}, {"q": ["cat dog dog"]})["f1"] == pytest.approx(2 / 3)


def test_squad_v2_no_answer():
    references = {"has": ["blue"], "none1": [], "none2": [], "none3": ["the"]}
    # has: right. none1: abstains, right (EM 1, F1 1). none2: answers, wrong (0, 0). none3: its only gold
    # normalises to nothing, so it is scored against "" ("" predicted -> 1), but it counts as answerable.
    got = m.squad_scores({"has": "Blue", "none1": "", "none2": "red", "none3": ""}, references)
    assert got == pytest.approx({
        "exact_match": 3 / 4, "f1": 3 / 4, "total": 4,
        "HasAns_exact": 1.0, "HasAns_f1": 1.0, "HasAns_total": 2,
        "NoAns_exact": 0.5, "NoAns_f1": 0.5, "NoAns_total": 2,
    })
    # A gold answer that normalises to nothing is dropped, not matched by an empty prediction.
    assert m.squad_scores({"q": ""}, {"q": ["The", "cat"]})["exact_match"] == 0.0
    # An answerable question left unanswered scores 0.
    abstain = m.squad_scores({"has": "", "none1": ""}, {"has": ["blue"], "none1": []})
    assert abstain["HasAns_exact"] == abstain["HasAns_f1"] == 0.0
    assert abstain["NoAns_exact"] == abstain["NoAns_f1"] == 1.0
    # Only unanswerable questions: the HasAns means are 0 over an empty group.
    only_none = m.squad_scores({"n": ""}, {"n": []})
    assert only_none["HasAns_total"] == 0 and only_none["HasAns_exact"] == 0.0 and only_none["NoAns_f1"] == 1.0


def test_squad_errors():
    with pytest.raises(ValueError, match="no answer for question id 'q2'"):
        m.squad_scores({"q1": "a"}, {"q1": ["a"], "q2": ["b"]})
    with pytest.raises(ValueError, match="no answer for question id 'q2'"):
        m.squad_scores({"q1": "a", "zz": "b"}, {"q1": ["a"], "q2": ["b"]})
    with pytest.raises(ValueError, match="ids not in references, e.g. 'zz'"):
        m.squad_scores({"q1": "a", "zz": "b"}, {"q1": ["a"]})
    with pytest.raises(ValueError, match="references is empty"):
        m.squad_scores({"q1": "a"}, {})
    with pytest.raises(ValueError, match="predictions is empty"):
        m.squad_scores({}, {"q1": ["a"]})
    with pytest.raises(ValueError, match=r"references\['q1'\] must be a list"):
        m.squad_scores({"q1": "a"}, {"q1": "a"})


# -------------------------------------------------------------------------------------- shared error paths


@pytest.mark.parametrize("fn", [m.accuracy, m.classification_scores, m.rouge_scores])
def test_count_mismatch_and_empty(fn):
    args = (["a", "b"], ["a"]) if fn is m.rouge_scores else ([0, 1], [0])
    with pytest.raises(ValueError, match="predictions has 2 examples but references has 1"):
        fn(*args)
    with pytest.raises(ValueError, match="predictions is empty"):
        fn([], [])
    with pytest.raises(ValueError, match="references is empty"):
        fn(["a"], [])


def test_missing_extra_names_the_install(monkeypatch):
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "seqeval.metrics", None)
    with pytest.raises(ImportError, match=r"jaxzoo\[finetune\]"):
        m.entity_scores([["O"]], [["O"]])
    monkeypatch.setitem(sys.modules, "rouge_score.rouge_scorer", None)
    with pytest.raises(ImportError, match=r"jaxzoo\[finetune\]"):
        m.rouge_scores(["a"], ["a"])


# ----------------------------------------------------------------------------------------- best checkpoint


def test_metrics_cover_every_returned_score():
    returned = set(m.classification_scores([0, 1], [0, 1]))
    returned |= set(m.multilabel_scores([[1]], [[1]]))
    returned |= set(m.entity_scores([["B-PER"]], [["B-PER"]]))
    returned |= set(m.rouge_scores(["a"], ["a"]))
    returned |= set(m.squad_scores({"q": ""}, {"q": []}))
    returned.add("accuracy")
    counts = {k for k in returned if k == "total" or k.endswith("_total")}
    for name in returned - counts:
        assert m.higher_is_better(name), name  # every score here is a fraction where more is better
    assert set(m.METRICS) - {"loss", "perplexity"} == returned - counts - {"f1_PER"}  # the two a job computes


def test_is_better():
    assert m.is_better("f1", 0.6, 0.5) and not m.is_better("f1", 0.5, 0.6)
    assert m.is_better("loss", 0.5, 0.6) and not m.is_better("loss", 0.6, 0.5)
    assert m.is_better("perplexity", 1.5, 2.0) and not m.is_better("perplexity", 2.0, 1.5)
    assert not m.is_better("accuracy", 0.5, 0.5)  # a tie keeps the older checkpoint
    assert m.is_better("f1_PER", 0.2, 0.1)
    assert m.is_better("rougeL", 0.0, None)
    assert m.is_better("loss", 3.0, math.nan)
    assert not m.is_better("loss", math.nan, 3.0)
    assert m.is_better("exact_match", np.float32(0.7), 0.6)
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        m.is_better("bleu", 1.0, 0.0)
    with pytest.raises(ValueError, match="unknown metric 'total'"):
        m.is_better("total", 1.0, 0.0)


def test_scores_are_fractions():
    rng = random.Random(5)
    reference = [_random_iob2(rng, 8) for _ in range(5)]
    predicted = [_random_iob2(rng, 8) for _ in range(5)]
    results = [
        m.classification_scores([rng.randrange(3) for _ in range(20)], [rng.randrange(3) for _ in range(20)]),
        m.multilabel_scores(np.eye(3, dtype=bool), np.ones((3, 3), bool)),
        m.entity_scores(predicted, reference),
        m.rouge_scores(["a b c. d e"], ["b c d\ne f"]),
        m.squad_scores({"q": "x y"}, {"q": ["y z"]}),
    ]
    for result in results:
        for key, value in result.items():
            if not key.endswith("total"):
                assert isinstance(value, float) and 0.0 <= value <= 1.0, (key, value)
    assert collections.Counter(type(v) for v in results[-1].values())[int] == 1
