//! The one place that turns models into bytes and back. An artifact is a
//! small envelope — magic, format version, algorithm tag — around a bincode
//! payload, so the payload codec can change later behind a new version.
//! Callers verify the sha256 stored beside the bytes before decoding, and
//! decoding is bounded, so damaged bytes give an error, never a crash.

use sha2::{Digest, Sha256};

use super::algorithms::Estimator;
use super::dataset::hex;
use super::model::Model;
use super::{MlError, MlResult, Task};

const MAGIC: &[u8; 4] = b"AMBM";
const FORMAT_VERSION: u16 = 1;
/// Largest payload decoding may allocate for: bytea's own limit.
const DECODE_LIMIT: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

fn tag(model: &Model) -> &'static str {
    match model.estimator {
        Estimator::DecisionTree(_) => "decision_tree",
        Estimator::LinearRegression(_) => "linear_regression",
    }
}

pub fn encode(model: &Model) -> MlResult<Vec<u8>> {
    let tag = tag(model);
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(tag.len() as u8);
    out.extend_from_slice(tag.as_bytes());
    let payload = bincode::serde::encode_to_vec(model, config())
        .map_err(|e| MlError::invalid(format!("model could not be encoded: {e}")))?;
    out.extend_from_slice(&payload);
    Ok(out)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Checks `bytes` against the stored hash, then decodes them.
pub fn decode_verified(bytes: &[u8], expected_sha256: &str) -> MlResult<Model> {
    let actual = sha256_hex(bytes);
    if actual != expected_sha256 {
        return Err(MlError::corrupt(format!(
            "artifact checksum mismatch: stored {expected_sha256}, computed {actual}"
        ))
        .with_hint(
            "the artifact bytes were changed after training; retrain or restore the model",
        ));
    }
    decode(bytes)
}

fn decode(bytes: &[u8]) -> MlResult<Model> {
    let corrupt = |what: String| {
        Err(MlError::corrupt(format!(
            "artifact is not readable: {what}"
        )))
    };
    if bytes.len() < 7 || &bytes[..4] != MAGIC {
        return corrupt("bad magic".into());
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return corrupt(format!("unknown format version {version}"));
    }
    let tag_len = bytes[6] as usize;
    let Some(tag) = bytes.get(7..7 + tag_len) else {
        return corrupt("truncated header".into());
    };
    let payload = &bytes[7 + tag_len..];
    let (model, used): (Model, usize) = match bincode::serde::decode_from_slice(payload, config()) {
        Ok(decoded) => decoded,
        Err(e) => return corrupt(e.to_string()),
    };
    if used != payload.len() {
        return corrupt("trailing bytes".into());
    }
    if tag != self::tag(&model).as_bytes() {
        return corrupt("algorithm tag does not match the payload".into());
    }
    // Predict indexes classes by what the estimator returns, so a classifier
    // must be a tree with classes, and a regressor a linear model without.
    let consistent = match (&model.estimator, model.task, &model.labels) {
        (Estimator::DecisionTree(_), Task::Classification, Some(labels)) => {
            !labels.classes.is_empty()
        }
        (Estimator::LinearRegression(_), Task::Regression, None) => true,
        _ => false,
    };
    if !consistent {
        return corrupt("its task, classes and estimator do not fit together".into());
    }
    if let Estimator::DecisionTree(tree) = &model.estimator {
        tree.validate()?;
        if model.labels.as_ref().map(|l| l.classes.len()) != Some(tree.n_classes as usize)
            || tree.n_features as usize != model.feature_names.len()
        {
            return corrupt("tree shape does not match its features or classes".into());
        }
    }
    if let Estimator::LinearRegression(linear) = &model.estimator {
        if linear.coefficients.len() != model.feature_names.len() {
            return corrupt("coefficients do not match the features".into());
        }
    }
    Ok(model.prepared())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::algorithms;
    use crate::ml::dataset::{Dataset, LabelKind, RawLabels};
    use crate::ml::hyperparams::Hyperparams;
    use crate::ml::model::train;
    use crate::ml::MlErrorKind;

    fn model() -> Model {
        let mut records = Vec::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            records.extend([i as f64, (i % 3) as f64]);
            labels.push(if i < 20 { "yes" } else { "no" }.to_string());
        }
        let d = Dataset::new(
            vec!["a".into(), "b".into()],
            records,
            RawLabels::Classes(LabelKind::Text, labels),
        )
        .unwrap();
        let spec = algorithms::lookup("decision_tree").unwrap();
        let params = Hyperparams::validate(spec.name, spec.params, &serde_json::json!({})).unwrap();
        train(
            &d,
            spec,
            &params,
            0.25,
            42,
            &d.feature_names,
            &crate::ml::Interrupts::none(),
        )
        .unwrap()
        .model
    }

    #[test]
    fn round_trip() {
        let m = model();
        let bytes = encode(&m).unwrap();
        let back = decode_verified(&bytes, &sha256_hex(&bytes)).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            back.predict_value(&[3.0, 0.0]),
            m.predict_value(&[3.0, 0.0])
        );
    }

    #[test]
    fn a_well_formed_payload_that_breaks_an_invariant_is_corrupt() {
        // A classifier whose estimator is a linear model: its "class index"
        // would be any number, and predict would index out of bounds.
        let m = model();
        let mismatched = Model::new(
            m.task,
            m.feature_names.clone(),
            m.labels.clone(),
            Estimator::LinearRegression(crate::ml::algorithms::LinearModel {
                intercept: 1e9,
                coefficients: vec![0.0; m.n_features()],
            }),
        );
        let bytes = encode(&mismatched).unwrap();
        let err = decode_verified(&bytes, &sha256_hex(&bytes)).unwrap_err();
        assert_eq!(err.kind, MlErrorKind::CorruptArtifact);
        assert!(
            err.message.contains("do not fit together"),
            "{}",
            err.message
        );
    }

    #[test]
    fn same_model_same_bytes() {
        assert_eq!(encode(&model()).unwrap(), encode(&model()).unwrap());
    }

    #[test]
    fn tampering_is_caught_before_and_without_the_hash() {
        let bytes = encode(&model()).unwrap();
        let sha = sha256_hex(&bytes);
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(
            decode_verified(&bad, &sha).unwrap_err().kind,
            MlErrorKind::CorruptArtifact
        );
        // Every single-byte flip, each with a matching hash, still never panics.
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x5a;
            let _ = decode_verified(&flipped, &sha256_hex(&flipped));
        }
        for cut in 0..bytes.len() {
            let cut_bytes = &bytes[..cut];
            assert!(decode_verified(cut_bytes, &sha256_hex(cut_bytes)).is_err());
        }
    }
}
