"""Operating points: per-variant calibration, named thresholds, figures with paired CIs."""

import numpy as np
import pytest
from skin_screening.core.classifier import Classifier
from skin_screening.core.model_card import ModelCard
from skin_screening.core.operating_points import (
    OperatingPointError,
    paired_recall_difference,
    point_figures,
    precision_table,
)


def test_the_shipped_card_has_both_points_and_a_calibration_per_variant(ham_model):
    card = ModelCard.load(ham_model)
    points = card.operating_points['points']
    assert points['screening']['threshold'] < points['balanced']['threshold']
    variants = [name for name, info in card.files.items() if 'precision' in info]
    assert sorted(card.operating_points['calibration']) == sorted(variants)


def brute_force_points(y, p, mel):
    """The points' rules computed here, without the library: every candidate threshold tried."""
    candidates = np.unique(p)
    recall = np.array([np.mean(p[y == 1] >= t) for t in candidates])
    mel_recall = np.array([np.mean(p[mel] >= t) for t in candidates])
    caught = [(p >= t) for t in candidates]
    f1 = [2 * np.sum(c & (y == 1)) / (c.sum() + y.sum()) for c in caught]
    return {
        'screening': candidates[recall >= 0.9].max(),
        'melanoma': candidates[(recall >= 0.9) & (mel_recall >= 0.9)].max(),
        'balanced': candidates[int(np.argmax(f1))],
    }


@pytest.mark.parametrize(('seed', 'mel_shift'), [(0, -0.15), (1, 0.15), (2, 0.0)])
def test_the_points_follow_their_rules_computed_independently(seed, mel_shift):
    """screening = the highest threshold with recall >= 0.90, melanoma = the highest with both
    recalls >= 0.90, balanced = max F1; each point's pooled figures re-counted here."""
    from training.operating_points import choose_points

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 600)
    mel = (y == 1) & (rng.uniform(size=600) < 0.3)
    p = np.clip(0.35 * y + mel_shift * mel + rng.uniform(0, 0.75, 600), 0, 1).round(4)
    fold = rng.integers(0, 5, 600)
    points = choose_points(y, p, fold, 'dermoscopic', mel=mel)
    expected = brute_force_points(y, p, mel)
    for name, threshold in expected.items():
        assert points[name]['threshold'] == pytest.approx(threshold), name
        pooled = points[name]['pooled_oof']
        assert pooled['recall'] == pytest.approx(np.mean(p[y == 1] >= threshold))
        assert pooled['specificity'] == pytest.approx(np.mean(p[y == 0] < threshold))
    assert points['melanoma']['pooled_oof']['melanoma_recall'] == pytest.approx(
        np.mean(p[mel] >= expected['melanoma'])
    )
    for name in expected:
        for row in points[name]['folds']:
            m = fold == row['fold']
            own, nested = (
                brute_force_points(y[m], p[m], mel[m]),
                brute_force_points(y[~m], p[~m], mel[~m]),
            )
            assert row['own_threshold'] == pytest.approx(own[name])
            assert row['threshold'] == pytest.approx(nested[name])  # chosen without the fold
            assert row['recall'] == pytest.approx(np.mean(p[m & (y == 1)] >= nested[name]))


def test_threshold_intervals_resample_whole_lesions():
    """The same 100 images, each seen 4 times: resampling lesions (the unit) gives the interval
    of 100 independent images, wider than treating the 400 views as independent; the chosen
    threshold and its recall lie inside their intervals."""
    from training.operating_points import choose_points

    rng = np.random.default_rng(3)
    y0 = rng.integers(0, 2, 100)
    p0 = np.clip(0.3 * y0 + rng.uniform(0, 0.7, 100), 0, 1)
    y, p, lesion = np.repeat(y0, 4), np.repeat(p0, 4), np.repeat(np.arange(100), 4)
    fold = lesion % 5
    grouped = choose_points(y, p, fold, 'dermoscopic', groups=lesion)['screening']
    naive = choose_points(y, p, fold, 'dermoscopic')['screening']
    width = {k: np.diff(v['interval']['threshold'])[0] for k, v in (('g', grouped), ('n', naive))}
    assert width['g'] > 1.3 * width['n'], width
    lo, hi = grouped['interval']['threshold']
    assert lo <= grouped['threshold'] <= hi
    lo, hi = grouped['interval']['recall']
    assert lo <= grouped['pooled_oof']['recall'] <= hi
    assert grouped['interval']['resamples'] >= 490


def test_each_variant_runs_with_its_own_calibration_at_the_chosen_point(ham_model):
    card = ModelCard.load(ham_model)
    fp32 = Classifier(ham_model, 'fp32', warmup_runs=0)
    int8 = Classifier(ham_model, 'int8', warmup_runs=0, operating_point='balanced')
    try:
        assert fp32.operating_point == card.operating_points['default']
        assert int8.operating_point == 'balanced'
        assert int8.rule.threshold == card.operating_points['points']['balanced']['threshold']
        own = card.operating_points['calibration']['model.int8-u8.onnx']
        assert (int8.rule.temperature, int8.rule.bias) == (own['temperature'], own['bias'])
        assert (int8.rule.temperature, int8.rule.bias) != (fp32.rule.temperature, fp32.rule.bias)
    finally:
        fp32.close()
        int8.close()


def test_an_unknown_point_or_an_uncalibrated_variant_is_refused(ham_model, tmp_path):
    with pytest.raises(OperatingPointError, match="unknown operating point 'lenient'.*screening"):
        Classifier(ham_model, operating_point='lenient', warmup_runs=0)
    card = ModelCard.load(ham_model)
    del card.operating_points['calibration']['model.fp16.onnx']
    with pytest.raises(OperatingPointError, match='model.fp16.onnx has no calibration'):
        card.rule('model.fp16.onnx')


def test_int8_keeps_fp32_recall_at_the_screening_point_on_held_out_lesions(
    ham_model, heldout_dermoscopy
):
    """Through the real engines, on 400 held-out images (every positive among them): INT8 at
    its own calibration catches the cancers FP32 catches (paired). Caught: INT8's bias moved
    by -0.3 (an INT8 logit shift left uncorrected) loses 6 points here."""
    crops, y = heldout_dermoscopy
    pick = np.concatenate([np.nonzero(y == 1)[0][:150], np.nonzero(y == 0)[0][:250]])
    crops, y = crops[pick], y[pick]
    caught = {}
    for precision in ('fp32', 'int8'):
        clf = Classifier(ham_model, precision, operating_point='screening', gate=False)
        caught[precision] = clf.classify_crops(crops)[0].probability >= clf.rule.threshold
        clf.close()
    recall = {p: c[y == 1].mean() for p, c in caught.items()}
    # What this test guards is INT8 against FP32 at the same point, paired on the same cancers
    # (no floor on the figure itself: the held-out recall is a measurement, see the README).
    lost = np.sum(caught['fp32'] & ~caught['int8'] & (y == 1))
    assert abs(recall['int8'] - recall['fp32']) <= 0.03, recall
    assert lost <= 0.03 * np.sum(y == 1), f'INT8 misses {lost} cancers FP32 catches'


def test_figures_have_group_bootstrap_intervals_around_them():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    prob = np.clip(y * 0.3 + rng.uniform(0, 0.7, 400), 0, 1)
    groups = [f'lesion{i // 2}' for i in range(400)]  # two frames per lesion
    got = point_figures(y, prob, 0.5, groups, n_boot=200)
    tp = np.sum((prob >= 0.5) & (y == 1))
    assert got['recall'] == pytest.approx(tp / y.sum())
    for key in ('recall', 'specificity', 'f1'):
        low, high = got[f'{key}_ci']
        assert low < got[key] < high


def test_paired_recall_difference_counts_discordant_cancers():
    y = np.array([1, 1, 1, 1, 0, 0])
    a = np.array([1, 1, 0, 0, 1, 0], bool)
    b = np.array([1, 0, 1, 1, 0, 0], bool)
    got = paired_recall_difference(y, a, b, n_boot=100)
    assert got['difference'] == pytest.approx(0.5 - 0.75)
    assert (got['only_a'], got['only_b'], got['positives']) == (1, 2, 4)


def test_the_table_pairs_precisions_on_the_frames_both_judged():
    y = np.array([1, 1, 1, 0, 0])
    fp32 = {'y': y, 'probability': [0.9, 0.2, 0.8, 0.1, 0.6], 'assessed': [1, 1, 1, 1, 1]}
    int8 = {'y': y, 'probability': [0.9, 0.6, 0.1, 0.1, 0.6], 'assessed': [1, 1, 0, 1, 1]}
    for r in (fp32, int8):
        r |= {'assessed': np.array(r['assessed'], bool), 'groups': list('abcde')}
        r['key'] = list('vwxyz')
    rows = precision_table({'fp32': fp32, 'int8': int8}, {'screening': 0.5}, n_boot=50)
    int8_row = next(r for r in rows if r['precision'] == 'int8')
    assert int8_row['unassessable'] == 1 and int8_row['unassessable_positives'] == 1
    assert int8_row['recall'] == pytest.approx(1.0)  # both judged positives caught
    paired = int8_row['recall_vs_fp32']  # on frames v, w (x was not judged by int8)
    assert paired['positives'] == 2 and paired['difference'] == pytest.approx(0.5)


def test_a_folder_that_is_no_cv_run_is_one_clear_error(ham_model, tmp_path):
    from training.data import DataError
    from training.operating_points import write_operating_points

    with pytest.raises(DataError, match='is not a cached-recipe training run'):
        write_operating_points(ham_model, [tmp_path])
