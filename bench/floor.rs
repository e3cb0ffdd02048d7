//! The benchmark's floor, (e): predicting the benchmark rows in plain Rust,
//! no Postgres. It compiles `src/ml` on its own (no pgrx), decodes the very
//! artifact the database stored and times its tree walk, and times linfa's
//! own batch predict with a tree fitted on the same training rows.
//!
//! Usage: ambient_bench_floor ROWS.csv ARTIFACT SHA256 TRAIN_ROWS MAX_DEPTH
//! ROWS.csv: f1..f10,label per line, in id order. ARTIFACT: the raw bytes.

#[allow(dead_code, unused_imports)]
#[path = "../src/ml/mod.rs"]
mod ml;

use std::time::Instant;

use linfa::prelude::*;
use linfa_trees::DecisionTree;
use ml::dataset::{Dataset, LabelKind, RawLabels};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, artifact, sha, train_rows, max_depth] = args.as_slice() else {
        eprintln!("usage: ambient_bench_floor ROWS.csv ARTIFACT SHA256 TRAIN_ROWS MAX_DEPTH");
        std::process::exit(2);
    };
    let train_rows: usize = train_rows.parse().expect("TRAIN_ROWS is a number");
    let max_depth: usize = max_depth.parse().expect("MAX_DEPTH is a number");
    let text = std::fs::read_to_string(path).expect("readable CSV");
    let mut records = Vec::new();
    let mut labels = Vec::new();
    for line in text.lines() {
        let mut fields = line.split(',');
        for _ in 0..10 {
            records.push(
                fields
                    .next()
                    .and_then(|f| f.parse::<f64>().ok())
                    .expect("10 numbers"),
            );
        }
        labels.push(fields.next().expect("a label").to_string());
    }
    let n = labels.len();

    // The model the database stored.
    let bytes = std::fs::read(artifact).expect("readable artifact");
    let model = ml::artifact::decode_verified(&bytes, sha).expect("a valid artifact");
    let started = Instant::now();
    let ours: f64 = records
        .chunks_exact(10)
        .map(|x| model.predict_value(x))
        .sum();
    let ours_seconds = started.elapsed().as_secs_f64();

    // linfa's own tree and batch predict, fitted on the same training rows.
    let names: Vec<String> = (1..=10).map(|i| format!("f{i}")).collect();
    let sample = Dataset::new(
        names,
        records[..train_rows * 10].to_vec(),
        RawLabels::Classes(LabelKind::Numeric, labels[..train_rows].to_vec()),
    )
    .expect("valid sample");
    let split = ml::split::holdout(&sample, 0.25, 42).expect("splits");
    let train = ml::algorithms::TrainingData {
        dataset: &sample,
        rows: &split.train,
    };
    let (targets, _) = train.class_indices().expect("classes");
    let linfa_tree = DecisionTree::params()
        .max_depth(Some(max_depth))
        .fit(&linfa::Dataset::new(train.records(), targets))
        .expect("linfa fits");
    let all = ndarray::Array2::from_shape_vec((n, 10), records).expect("n x 10");
    let started = Instant::now();
    let linfa_predictions = linfa_tree.predict(&all);
    let linfa_seconds = started.elapsed().as_secs_f64();

    println!(
        "{{\"rows\": {n}, \"linfa_predict_seconds\": {linfa_seconds:.4}, \"stored_tree_seconds\": {ours_seconds:.4}, \"checksum\": {ours}, \"linfa_checksum\": {}}}",
        linfa_predictions.sum()
    );
}
