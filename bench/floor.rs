//! The benchmark's floors: predicting the benchmark rows in plain Rust, on
//! one thread, no Postgres. It compiles `src/ml` on its own (no pgrx),
//! decodes the very artifacts the database stored and times each model's
//! preprocessing and prediction over every row: (e) for the depth-10 tree,
//! and the same for the ensembles that predict in a query.
//!
//! Usage: ambient_bench_floor ROWS.csv ARTIFACT SHA256 [ARTIFACT SHA256 ...]
//! ROWS.csv: f1..f10,label per line, in id order. ARTIFACT: the raw bytes.
//! Prints, per artifact in order, its seconds and the sum of its
//! predictions (which the same query in the database must give).

#[allow(dead_code, unused_imports)]
#[path = "../src/ml/mod.rs"]
mod ml;

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, artifacts @ ..] = args.as_slice() else {
        eprintln!("usage: ambient_bench_floor ROWS.csv ARTIFACT SHA256 [ARTIFACT SHA256 ...]");
        std::process::exit(2);
    };
    if artifacts.is_empty() || artifacts.len() % 2 != 0 {
        eprintln!("usage: ambient_bench_floor ROWS.csv ARTIFACT SHA256 [ARTIFACT SHA256 ...]");
        std::process::exit(2);
    }
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

    let floors: Vec<String> = artifacts
        .chunks_exact(2)
        .map(|pair| {
            let (seconds, sum) = floor(&records, &pair[0], &pair[1]);
            format!("{{\"seconds\": {seconds:.4}, \"checksum\": {sum}}}")
        })
        .collect();
    println!("{{\"rows\": {n}, \"floors\": [{}]}}", floors.join(", "));
}

/// Decodes the model the database stored, then, as the database does,
/// preprocesses each row and predicts it: the seconds, and the sum.
fn floor(records: &[f64], artifact: &str, sha: &str) -> (f64, f64) {
    let bytes = std::fs::read(artifact).expect("readable artifact");
    let model = ml::artifact::decode_verified(&bytes, sha).expect("a valid artifact");
    let started = Instant::now();
    let mut encoded = Vec::with_capacity(16);
    let mut values = Vec::with_capacity(10);
    let sum: f64 = records
        .chunks_exact(10)
        .map(|x| {
            values.clear();
            values.extend(x.iter().map(|&v| ml::preprocess::Value::Number(v)));
            model
                .encode(&values, &mut encoded)
                .expect("numeric inputs encode");
            model.predict_value(&encoded)
        })
        .sum();
    (started.elapsed().as_secs_f64(), sum)
}
