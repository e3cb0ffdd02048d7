//! Property tests over hostile bytes: artifacts from a corpus kept in the
//! repository (`tests/fuzz/corpus`), mutated (bit flips, overwrites, cuts,
//! insertions, huge length prefixes), and arbitrary JSON given as
//! hyper-parameters and preprocessing options. No input may panic, and
//! decoding an artifact may not allocate more than a bound proportional to
//! its size: a counting allocator measures each case on its own thread.
//! `AMBIENT_FUZZ_CASES` sets the cases per property (default 400, a few
//! seconds); `AMBIENT_FUZZ_REGENERATE=1` writes the corpus again after a
//! format change. The policy parser's property is in `api/policy.rs`
//! (`arbitrary_policies_are_refused_or_accepted_never_a_panic`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use super::algorithms::ALGORITHMS;
use super::artifact;
use super::dataset::{ColumnKind, Dataset, LabelKind, RawColumn, RawLabels};
use super::hyperparams::Hyperparams;
use super::model::train_with_defaults;
use super::preprocess::{self, InputStyle, Preprocessor};
use super::{Interrupts, Task};

/// The system allocator, counting what each thread holds and the most it
/// held, so a test can bound what one call allocates.
struct Counting;

thread_local! {
    static HELD: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let _ = HELD.try_with(|held| {
        let now = held.get().saturating_add(bytes);
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = HELD.try_with(|held| held.set(held.get().saturating_sub(bytes)));
}

// SAFETY: every call is passed to `System` unchanged; only counters move.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for `layout`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the caller promised for `ptr` and `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What `work` allocated at most beyond what the thread held before, and
/// its result.
fn peak_of<T>(work: impl FnOnce() -> T) -> (usize, T) {
    let before = HELD.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let out = work();
    (PEAK.with(Cell::get) - before, out)
}

/// What decoding `n` bytes may allocate: the decoded model is at most a
/// small multiple of its encoding, plus what serde preallocates for one
/// collection whose length prefix claims more than the input holds (1 MiB)
/// at each level of nesting.
fn decode_bound(n: usize) -> usize {
    (16 << 20) + 64 * n
}

fn cases() -> u32 {
    std::env::var("AMBIENT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

pub(crate) fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    })
}

fn corpus_dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(kind)
}

/// A small dataset with a category, a timestamp and missing values, for
/// `task`.
fn seed_data(task: Task) -> Dataset {
    let colours = ["red", "blue", "green"];
    let mut records = Vec::new();
    let mut classes = Vec::new();
    let mut values = Vec::new();
    // A fixed linear congruential stream, so no column is a linear
    // function of another.
    let mut state: u64 = 12345;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    for i in 0..60 {
        let colour = if i % 11 == 0 {
            f64::NAN
        } else {
            (i % 3) as f64
        };
        let age = if i % 7 == 0 {
            f64::NAN
        } else {
            (20.0 + 40.0 * next()).round()
        };
        let seen = 1.6e9 + 86_400.0 * 365.0 * next();
        records.extend([colour, age, seen]);
        let score = age.max(30.0) / 60.0 + next() * 0.6 + colour.max(0.0) * 0.1;
        classes.push(if score > 0.9 { "yes" } else { "no" }.to_string());
        values.push(score * 10.0);
    }
    let columns = vec![
        RawColumn {
            name: "colour".into(),
            kind: ColumnKind::Categorical,
            dictionary: colours.iter().map(|s| s.to_string()).collect(),
        },
        RawColumn {
            name: "age".into(),
            kind: ColumnKind::Numeric,
            dictionary: Vec::new(),
        },
        RawColumn {
            name: "seen".into(),
            kind: ColumnKind::Timestamp,
            dictionary: Vec::new(),
        },
    ];
    let labels = match task {
        Task::Classification => RawLabels::Classes(LabelKind::Text, classes),
        Task::Regression => RawLabels::Values(values),
    };
    Dataset::new_interruptible(columns, records, labels, &Interrupts::none()).unwrap()
}

/// Every algorithm on every task it does, encoded: the artifact corpus.
fn seed_artifacts() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for spec in ALGORITHMS {
        for task in spec.tasks {
            let model = train_with_defaults(&seed_data(task.task), spec.name, 7, 1).model;
            let name = format!("{}_{}.ambm", spec.name, task.task.as_str());
            out.push((name, artifact::encode(&model).unwrap()));
        }
    }
    out
}

fn artifact_corpus(regenerate: bool) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir("artifacts");
    if regenerate {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seed_artifacts() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut corpus: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(path).unwrap())
        })
        .collect();
    corpus.sort();
    corpus
}

#[test]
fn the_artifact_corpus_covers_every_algorithm_and_decodes() {
    let corpus = artifact_corpus(std::env::var("AMBIENT_FUZZ_REGENERATE").is_ok());
    for spec in ALGORITHMS {
        for task in spec.tasks {
            let name = format!("{}_{}.ambm", spec.name, task.task.as_str());
            let (_, bytes) = corpus.iter().find(|(n, _)| *n == name).unwrap_or_else(|| {
                panic!(
                    "tests/fuzz/corpus/artifacts lacks {name}; AMBIENT_FUZZ_REGENERATE=1 writes it"
                )
            });
            let model = artifact::decode_verified(bytes, &artifact::sha256_hex(bytes))
                .unwrap_or_else(|e| panic!("{name} no longer decodes ({e}): the format changed, so keep reading it or regenerate"));
            assert_eq!(model.algorithm, spec.name);
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    /// A bincode varint of `u64` (a length that claims a lot) written over
    /// the bytes at a position.
    HugeLength(usize, u64),
    Repeat(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (
            any::<usize>(),
            prop_oneof![Just(u64::MAX), Just(1 << 40), Just(1 << 28), 1u64..1 << 20]
        )
            .prop_map(|(i, n)| Mutation::HugeLength(i, n)),
        (any::<usize>(), 1..64usize).prop_map(|(i, n)| Mutation::Repeat(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len().max(1);
    match m {
        Mutation::Flip(i, b) => {
            if let Some(x) = bytes.get_mut(i % len) {
                *x ^= b;
            }
        }
        Mutation::Set(i, b) => {
            if let Some(x) = bytes.get_mut(i % len) {
                *x = *b;
            }
        }
        Mutation::Cut(i) => bytes.truncate(i % len),
        Mutation::Insert(i, b) => {
            let at = i % (bytes.len() + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::HugeLength(i, n) => {
            let at = i % len;
            let mut varint = vec![253];
            varint.extend_from_slice(&n.to_le_bytes());
            let end = (at + varint.len()).min(bytes.len());
            bytes.splice(at..end, varint);
        }
        Mutation::Repeat(i, n) => {
            let at = i % len;
            let end = (at + n).min(bytes.len());
            let piece: Vec<u8> = bytes[at..end].to_vec();
            bytes.splice(at..at, piece);
        }
    }
}

#[test]
fn mutated_artifacts_never_panic_and_decode_within_a_bound() {
    let corpus = artifact_corpus(false);
    let strategy = (0..corpus.len(), proptest::collection::vec(mutation(), 1..6));
    runner()
        .run(&strategy, |(seed, mutations)| {
            let (name, original) = &corpus[seed];
            let mut bytes = original.clone();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            // The hash is the mutated bytes' own: only decoding stands
            // between them and predict.
            let sha = artifact::sha256_hex(&bytes);
            let (peak, decoded) = peak_of(|| artifact::decode_verified(&bytes, &sha));
            prop_assert!(
                peak <= decode_bound(bytes.len()),
                "{name}: decoding {} bytes allocated {peak}",
                bytes.len()
            );
            if let Ok(model) = decoded {
                // What decodes is usable: predicting any row does not panic.
                let width = model.feature_names.len();
                for row in [vec![0.0; width], vec![f64::NAN; width], vec![1e308; width]] {
                    let _ = model.predict_value(&row);
                    let _ = model.predict_proba(&row);
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Arbitrary JSON: scalars of every kind (huge, negative, fractional,
/// NaN-like strings), arrays and objects, nested, with the keys the parsers
/// know mixed in.
pub(crate) fn json(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        proptest::sample::select(keys).prop_map(str::to_string),
        "[a-z_]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(2),
            Just(i32::MAX as i64)
        ]
        .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
        proptest::sample::select(keys).prop_map(Value::from),
        proptest::sample::select(
            &["NaN", "inf", "-1", "1e400", "auto", "standard", "onehot", "ordinal", "mean"][..]
        )
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every hyper-parameter name any algorithm takes.
fn parameter_names() -> &'static [&'static str] {
    let mut names: Vec<&'static str> = ALGORITHMS
        .iter()
        .flat_map(|a| a.tasks.iter())
        .flat_map(|t| t.params.iter())
        .map(|p| p.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    Box::leak(names.into_boxed_slice())
}

#[test]
fn arbitrary_hyperparameters_are_refused_or_accepted_never_a_panic() {
    let keys = parameter_names();
    runner()
        .run(&(0..ALGORITHMS.len(), json(keys)), |(k, given)| {
            let spec = &ALGORITHMS[k];
            for task in spec.tasks {
                let _ = Hyperparams::validate(spec.name, task.params, &given);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_preprocessing_options_are_refused_or_fitted_never_a_panic() {
    const KEYS: &[&str] = &[
        "colour",
        "age",
        "seen",
        "impute",
        "scale",
        "encode",
        "clip",
        "log",
        "bins",
        "max_categories",
        "constant",
        "none",
        "median",
        "mean",
        "most_frequent",
    ];
    let data = seed_data(Task::Regression);
    let columns: Vec<(String, ColumnKind)> = data
        .feature_names
        .iter()
        .cloned()
        .zip(data.kinds.iter().copied())
        .collect();
    let rows: Vec<usize> = (0..data.n_rows()).collect();
    let styles = [InputStyle::Plain, InputStyle::Scaled, InputStyle::Native];
    runner()
        .run(&(0..styles.len(), json(KEYS)), |(s, given)| {
            if let Ok(options) = preprocess::parse_options(&given, &columns, styles[s]) {
                if let Ok(fitted) = Preprocessor::fit(&data, &rows, &options, &Interrupts::none()) {
                    let _ = fitted.transform(&data, &Interrupts::none());
                }
            }
            Ok(())
        })
        .unwrap();
}
