//! The benchmark's floor, (e): predicting the benchmark rows in plain Rust,
//! no Postgres. It compiles `src/ml` on its own (no pgrx), decodes the very
//! artifact the database stored and times its tree walk over every row.
//!
//! Usage: ambient_bench_floor ROWS.csv ARTIFACT SHA256
//! ROWS.csv: f1..f10,label per line, in id order. ARTIFACT: the raw bytes.

#[allow(dead_code, unused_imports)]
#[path = "../src/ml/mod.rs"]
mod ml;

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, artifact, sha] = args.as_slice() else {
        eprintln!("usage: ambient_bench_floor ROWS.csv ARTIFACT SHA256");
        std::process::exit(2);
    };
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
    // As the database does: preprocess each row, then predict.
    let started = Instant::now();
    let mut encoded = Vec::with_capacity(16);
    let mut values = Vec::with_capacity(10);
    let ours: f64 = records
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
    let ours_seconds = started.elapsed().as_secs_f64();

    println!("{{\"rows\": {n}, \"stored_tree_seconds\": {ours_seconds:.4}, \"checksum\": {ours}}}");
}
