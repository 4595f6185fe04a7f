//! Renders a complete sample report from synthetic data to `$TMPDIR/sample_report.html` (kept, for a
//! person to look at), going through the same public API the evaluation command uses: metrics from
//! scores and rasters, PNGs from the rasters, then the page.

use mammo_eval::{
    Chart, ClassifierMetrics, DEFAULT_BOOTSTRAP_REPLICATES, GalleryRow, GallerySection, MapMetricsAccumulator, Report,
    STANDARD_COLUMNS, Series, choose_threshold, colormap_png, flatten_metrics, gray_png, heat_overlay_png, ncc,
    render_report, roc_curve,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SIDE: usize = 64;

/// A standard normal draw (Box–Muller), to avoid a rand_distr dependency for a test.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// One synthetic malignant patch: tissue texture, a spiculated lesion, its mask, the breast region,
/// and the two kinds of map.
struct Patch {
    id: String,
    x: Vec<f32>,
    mask: Vec<u8>,
    valid: Vec<u8>,
    /// What the attribution GAN would return, as |m|; `x + m` removes the lesion.
    attribution: Vec<f32>,
    /// A gradient-saliency-like map: noisy, edge-heavy.
    saliency: Vec<f32>,
}

fn synthetic_patch(index: usize, rng: &mut ChaCha8Rng) -> Patch {
    let n = SIDE * SIDE;
    let (cx, cy) = (32.0 + rng.random_range(-6.0..6.0), 32.0 + rng.random_range(-6.0..6.0));
    let phase: f64 = rng.random_range(0.0..6.28);
    let waves: Vec<(f64, f64, f64)> = (0..6)
        .map(|_| (rng.random_range(0.05..0.4), rng.random_range(0.0..6.28), rng.random_range(0.0..6.28)))
        .collect();
    // Map quality varies by patch so that the gallery has clear best and worst rows.
    let quality = 1.0 - index as f64 / 11.0;
    let (decoy_x, decoy_y) = (rng.random_range(8.0..56.0), rng.random_range(8.0..56.0));
    let mut p = Patch {
        id: format!("case{:03}_R_CC_p{}", 7 * index + 3, index),
        x: vec![0.0; n],
        mask: vec![0; n],
        valid: vec![0; n],
        attribution: vec![0.0; n],
        saliency: vec![0.0; n],
    };
    for yy in 0..SIDE {
        for xx in 0..SIDE {
            let i = yy * SIDE + xx;
            let (fx, fy) = (xx as f64, yy as f64);
            // The skin line cuts the upper right corner: outside it is air, not breast.
            let inside = fx + 0.6 * (SIDE as f64 - fy) < 92.0;
            p.valid[i] = u8::from(inside);
            let tissue: f64 = 0.45
                + waves.iter().map(|&(f, a, b)| 0.05 * (f * fx * b.cos() + f * fy * b.sin() + a).sin()).sum::<f64>();
            let (dx, dy) = (fx - cx, fy - cy);
            let r = (dx * dx + dy * dy).sqrt();
            let theta = dy.atan2(dx);
            let radius = 7.0 * (1.0 + 0.25 * (5.0 * theta + phase).sin());
            let core = r < radius;
            // Spicules: thin rays at 7 angles reaching out to 2.2 × the core radius.
            let ray = (7.0 * theta + phase).sin().abs() > 0.985 && r < 2.2 * radius;
            let lesion = (core || ray) && inside;
            p.mask[i] = u8::from(lesion);
            let lesion_intensity = if core {
                0.35
            } else if lesion {
                0.2
            } else {
                0.0
            };
            let noise = 0.03 * normal(rng);
            p.x[i] = if inside { (tissue + lesion_intensity + noise) as f32 } else { 0.02 };
            // |m|: the lesion's intensity, blurred by distance, mixed with a decoy blob for poor maps.
            let near = (-(r - radius).max(0.0).powi(2) / 8.0).exp();
            let decoy = (-((fx - decoy_x).powi(2) + (fy - decoy_y).powi(2)) / 40.0).exp();
            let good = if lesion { lesion_intensity } else { 0.15 * near };
            let m = (quality * good + (1.0 - quality) * 0.3 * decoy + 0.01 * normal(rng).abs())
                * f64::from(u8::from(inside));
            p.attribution[i] = m as f32;
            p.saliency[i] = ((0.5 * good + 0.15 * normal(rng).abs()) * f64::from(u8::from(inside))) as f32;
        }
    }
    p
}

/// A scored test (or validation) split: P(malignant) for malignant and benign cases.
fn scored_split(rng: &mut ChaCha8Rng, n_pos: usize, n_neg: usize) -> (Vec<f64>, Vec<bool>) {
    let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    for k in 0..n_pos + n_neg {
        let malignant = k < n_pos;
        scores.push(sigmoid(1.3 * normal(rng) + if malignant { 1.4 } else { -1.2 }));
        labels.push(malignant);
    }
    (scores, labels)
}

/// Training curves shaped like the real thing: decaying losses, rising accuracy, a WGAN critic.
fn training_series(rng: &mut ChaCha8Rng) -> Vec<Series> {
    let curve = |rng: &mut ChaCha8Rng, steps: u64, every: u64, f: &dyn Fn(f64) -> f64, noise: f64| -> Vec<(u64, f64)> {
        (0..=steps / every).map(|k| (k * every, f((k * every) as f64) + noise * normal(rng))).collect()
    };
    vec![
        Series {
            name: "classifier/loss/train".into(),
            points: curve(rng, 3000, 10, &|s| 0.25 + 0.45 * (-s / 600.0).exp(), 0.03),
        },
        Series {
            name: "classifier/loss/val".into(),
            points: curve(rng, 3000, 250, &|s| 0.32 + 0.4 * (-s / 700.0).exp(), 0.01),
        },
        Series {
            name: "classifier/accuracy/train".into(),
            points: curve(rng, 3000, 10, &|s| 0.9 - 0.4 * (-s / 500.0).exp(), 0.02),
        },
        Series {
            name: "classifier/accuracy/val".into(),
            points: curve(rng, 3000, 250, &|s| 0.86 - 0.36 * (-s / 600.0).exp(), 0.01),
        },
        Series { name: "gan/critic".into(), points: curve(rng, 20000, 20, &|s| -6.0 * (-s / 4000.0).exp() - 0.5, 0.4) },
        Series {
            name: "gan/generator".into(),
            points: curve(rng, 20000, 20, &|s| 3.0 * (-s / 5000.0).exp() + 0.8, 0.3),
        },
        Series {
            name: "gan/l1".into(),
            points: curve(rng, 20000, 20, &|s| 0.6 + 0.8 * (1.0 - (-s / 3000.0).exp()), 0.05),
        },
    ]
}

/// The four standard images of one patch.
fn gallery_images(p: &Patch, map_hi: f32) -> Vec<Vec<u8>> {
    // x + m: the GAN removes the lesion, so m is the negative lesion intensity where the map is.
    let counterfactual: Vec<f32> = p.x.iter().zip(&p.attribution).map(|(x, m)| x - m).collect();
    vec![
        gray_png(&p.x, SIDE, SIDE, 0.0, 1.0),
        colormap_png(&p.attribution, SIDE, SIDE, 0.0, map_hi),
        gray_png(&counterfactual, SIDE, SIDE, 0.0, 1.0),
        heat_overlay_png(&p.x, &p.attribution, SIDE, SIDE),
    ]
}

#[test]
fn render_sample_report() {
    let mut rng = ChaCha8Rng::seed_from_u64(20240501);

    // Classifier: threshold on validation, metrics on test.
    let (val_scores, val_labels) = scored_split(&mut rng, 60, 120);
    let (test_scores, test_labels) = scored_split(&mut rng, 150, 300);
    let threshold = choose_threshold(&val_scores, &val_labels);
    let classifier =
        ClassifierMetrics::compute(&test_scores, &test_labels, threshold, DEFAULT_BOOTSTRAP_REPLICATES, 1).unwrap();
    assert!(classifier.auc > 0.8 && classifier.auc_ci95[0] < classifier.auc && classifier.auc < classifier.auc_ci95[1]);

    // Maps: twelve malignant patches, of falling map quality.
    let patches: Vec<Patch> = (0..12).map(|i| synthetic_patch(i, &mut rng)).collect();
    let mut attribution = MapMetricsAccumulator::new();
    let mut saliency = MapMetricsAccumulator::new();
    let mut rows: Vec<(f64, GalleryRow)> = Vec::new();
    let map_hi = patches.iter().flat_map(|p| p.attribution.iter().copied()).fold(0.0f32, f32::max);
    for (k, p) in patches.iter().enumerate() {
        let p_before = 0.95 - 0.02 * k as f64;
        let p_after = 0.1 + 0.06 * k as f64;
        attribution.add_patch(&p.attribution, &p.mask, &p.mask, &p.valid, Some((p_before, p_after)));
        saliency.add_patch(&p.saliency, &p.mask, &p.mask, &p.valid, None);
        let r = ncc(&p.attribution, &p.mask).unwrap();
        rows.push((
            r,
            GalleryRow {
                patch_id: p.id.clone(),
                p_before: Some(p_before),
                p_after: Some(p_after),
                ncc: Some(r),
                note: String::new(),
                images: gallery_images(p, map_hi),
            },
        ));
    }
    let attribution = attribution.finish();
    let saliency = saliency.finish();
    assert_eq!(attribution.n, 12);
    assert!(attribution.pxap > 0.0 && attribution.pxap <= 1.0);
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let columns: Vec<String> = STANDARD_COLUMNS.iter().map(|c| c.to_string()).collect();
    let worst: Vec<GalleryRow> = rows.iter().rev().take(3).map(|(_, r)| r.clone()).collect();
    let best: Vec<GalleryRow> = rows.into_iter().take(3).map(|(_, r)| r).collect();

    let report = Report {
        title: "mammogan evaluation — sample (synthetic data)".into(),
        details: vec![
            ("run".into(), "sample-run-0001".into()),
            ("dataset".into(), "phantom, 450 test cases (synthetic)".into()),
            ("note".into(), "Every number on this page is synthetic, made by a test.".into()),
        ],
        classifier: Some(classifier),
        roc_curve: roc_curve(&test_scores, &test_labels),
        attribution: Some(attribution),
        saliency: Some(saliency),
        form_only: None,
        whole_image: None,
        charts: Chart::group_by_family(training_series(&mut rng)),
        gallery: vec![
            GallerySection {
                title: "Best (highest NCC)".into(),
                description: "The three malignant test patches whose map agrees best with the mask.".into(),
                columns: columns.clone(),
                rows: best,
            },
            GallerySection {
                title: "Worst (lowest NCC)".into(),
                description: "The three whose map agrees least, worst first.".into(),
                columns,
                rows: worst,
            },
        ],
    };
    let html = render_report(&report);
    assert_eq!(html, render_report(&report), "rendering must be deterministic");
    assert!(!html.contains("://") && !html.contains("<script"));
    assert_eq!(html.matches("<figure").count(), 1 + 3, "ROC + one chart per family");
    assert_eq!(html.matches("<img ").count(), 2 * 3 * 4);

    let flat = flatten_metrics(Some(&classifier), Some(&attribution), Some(&saliency), None);
    assert!(flat["saliency.counterfactual_drop"].is_null());

    let path = std::env::temp_dir().join("sample_report.html");
    std::fs::write(&path, &html).unwrap();
    std::fs::write(std::env::temp_dir().join("sample_metrics.json"), serde_json::to_string_pretty(&flat).unwrap())
        .unwrap();
    eprintln!("wrote {} ({} bytes)", path.display(), html.len());
}
