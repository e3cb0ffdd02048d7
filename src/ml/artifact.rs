//! The one place that turns models into bytes and back. An artifact is a
//! small envelope — magic, format version, algorithm tag — around a bincode
//! payload, so the payload codec can change later behind a new version.
//! Callers verify the sha256 stored beside the bytes before decoding, and
//! decoding is bounded, so damaged bytes give an error, never a crash.

use sha2::{Digest, Sha256};

use super::dataset::hex;
use super::model::Model;
use super::{MlError, MlResult, Task};

const MAGIC: &[u8; 4] = b"AMBM";
/// 1: 0.1.0's classification tree and OLS (still read, see `v1`);
/// 2: every algorithm, named in the model.
const FORMAT_VERSION: u16 = 2;
/// Most a payload may claim (the memory its collections and strings take
/// once decoded) per byte of its encoding, beyond `CLAIM_SLACK`: a length
/// prefix that claims more than its bytes could hold is refused before
/// anything is allocated for it. An honest model claims far less: its
/// densest collections (lists of empty strings or vectors, 24 bytes in
/// memory for 1 encoded) stay under 24.
const CLAIM_PER_BYTE: usize = 32;
const CLAIM_SLACK: usize = 1 << 20;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode(model: &Model) -> MlResult<Vec<u8>> {
    let tag = model.algorithm.as_bytes();
    let tag_len = u8::try_from(tag.len())
        .map_err(|_| MlError::invalid("algorithm name too long for an artifact"))?;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(tag_len);
    out.extend_from_slice(tag);
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

fn corrupt<T>(what: impl std::fmt::Display) -> MlResult<T> {
    Err(MlError::corrupt(format!(
        "artifact is not readable: {what}"
    )))
}

/// Decodes a payload under a claim limit proportional to its length
/// (`CLAIM_PER_BYTE`): bincode's limit is a constant, so one of a few
/// limits, each at most twice what the payload needs, is chosen.
fn decode_payload<T: serde::de::DeserializeOwned>(payload: &[u8]) -> MlResult<T> {
    let claim = payload
        .len()
        .saturating_mul(CLAIM_PER_BYTE)
        .saturating_add(CLAIM_SLACK);
    match claim {
        c if c <= 1 << 22 => decode_within::<T, { 1 << 22 }>(payload),
        c if c <= 1 << 24 => decode_within::<T, { 1 << 24 }>(payload),
        c if c <= 1 << 26 => decode_within::<T, { 1 << 26 }>(payload),
        c if c <= 1 << 28 => decode_within::<T, { 1 << 28 }>(payload),
        c if c <= 1 << 30 => decode_within::<T, { 1 << 30 }>(payload),
        c if c <= 1 << 32 => decode_within::<T, { 1 << 32 }>(payload),
        _ => decode_within::<T, { 1 << 34 }>(payload),
    }
}

fn decode_within<T: serde::de::DeserializeOwned, const LIMIT: usize>(
    payload: &[u8],
) -> MlResult<T> {
    match bincode::serde::decode_from_slice(payload, config().with_limit::<LIMIT>()) {
        Ok((value, used)) if used == payload.len() => Ok(value),
        Ok(_) => corrupt("trailing bytes"),
        Err(e) => corrupt(e),
    }
}

fn decode(bytes: &[u8]) -> MlResult<Model> {
    if bytes.len() < 7 || &bytes[..4] != MAGIC {
        return corrupt("bad magic");
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    let tag_len = bytes[6] as usize;
    let Some(tag) = bytes.get(7..7 + tag_len) else {
        return corrupt("truncated header");
    };
    let payload = &bytes[7 + tag_len..];
    let model = match version {
        1 => decode_payload::<v1::Model>(payload)?.upgrade(tag)?,
        FORMAT_VERSION => decode_payload::<Model>(payload)?,
        other => return corrupt(format!("unknown format version {other}")),
    };
    if tag != model.algorithm.as_bytes() {
        return corrupt("algorithm tag does not match the payload");
    }
    // Predict indexes classes by what the estimator returns, so a
    // classifier must have classes and an estimator with one output per
    // class, and a regressor neither.
    let classes = match (model.task, &model.labels) {
        (Task::Classification, Some(labels)) if !labels.classes.is_empty() => labels.classes.len(),
        (Task::Regression, None) => 0,
        _ => return corrupt("its task, classes and estimator do not fit together"),
    };
    model.inputs.validate(model.feature_names.len())?;
    model
        .estimator
        .validate(model.feature_names.len(), classes)
        .map_err(|e| {
            MlError::corrupt(format!(
                "{}; its task, classes and estimator do not fit together",
                e.message
            ))
        })?;
    Ok(model.prepared())
}

/// Format 1, written by 0.1.0: a classification tree with class counts at
/// its leaves, or OLS coefficients. Read and turned into today's forms, so
/// models trained before an upgrade keep predicting exactly as they did.
mod v1 {
    use serde::Deserialize;

    use crate::ml::algorithms::tree::{Node as TreeNode, Tree};
    use crate::ml::algorithms::{Estimator as Current, LinearModel};
    use crate::ml::dataset::LabelEncoding;
    use crate::ml::preprocess::Preprocessor;
    use crate::ml::{MlError, MlResult, Task};

    #[cfg_attr(test, derive(serde::Serialize))]
    #[derive(Deserialize)]
    pub struct Model {
        task: Task,
        feature_names: Vec<String>,
        labels: Option<LabelEncoding>,
        estimator: Estimator,
    }

    #[cfg_attr(test, derive(serde::Serialize))]
    #[derive(Deserialize)]
    enum Estimator {
        DecisionTree(ClassificationTree),
        LinearRegression(LinearModel),
    }

    #[cfg_attr(test, derive(serde::Serialize))]
    #[derive(Deserialize)]
    struct ClassificationTree {
        n_features: u32,
        n_classes: u32,
        nodes: Vec<Node>,
        leaf_counts: Vec<u32>,
    }

    #[cfg_attr(test, derive(serde::Serialize))]
    #[derive(Deserialize, Clone, Copy)]
    enum Node {
        Split {
            feature: u32,
            threshold: f64,
            left: u32,
            right: u32,
        },
        Leaf {
            class: u32,
            leaf: u32,
        },
    }

    impl Model {
        pub fn upgrade(self, tag: &[u8]) -> MlResult<super::Model> {
            let (algorithm, estimator) = match self.estimator {
                Estimator::DecisionTree(tree) => ("decision_tree", Current::Tree(tree.upgrade()?)),
                Estimator::LinearRegression(m) => ("linear_regression", Current::Linear(m)),
            };
            if tag != algorithm.as_bytes() {
                return super::corrupt("algorithm tag does not match the payload");
            }
            // 0.1.0 took numbers as they were, and a NULL was an error.
            Ok(super::Model::new(
                algorithm,
                self.task,
                Preprocessor::identity(&self.feature_names),
                self.labels,
                estimator,
            ))
        }
    }

    /// An artifact as 0.1.0 wrote it: a two-leaf tree on features a, b,
    /// where a < 2.5 is "no" (3 rows) and the rest 2 "no", 5 "yes".
    #[cfg(test)]
    pub fn two_leaf_tree() -> Vec<u8> {
        let model = Model {
            task: Task::Classification,
            feature_names: vec!["a".into(), "b".into()],
            labels: Some(LabelEncoding {
                kind: crate::ml::dataset::LabelKind::Text,
                classes: vec!["no".into(), "yes".into()],
            }),
            estimator: Estimator::DecisionTree(ClassificationTree {
                n_features: 2,
                n_classes: 2,
                nodes: vec![
                    Node::Split {
                        feature: 0,
                        threshold: 2.5,
                        left: 1,
                        right: 2,
                    },
                    Node::Leaf { class: 0, leaf: 0 },
                    Node::Leaf { class: 1, leaf: 1 },
                ],
                leaf_counts: vec![3, 0, 2, 5],
            }),
        };
        let tag = b"decision_tree";
        let mut out = b"AMBM".to_vec();
        out.extend_from_slice(&1u16.to_le_bytes());
        out.push(tag.len() as u8);
        out.extend_from_slice(tag);
        out.extend(bincode::serde::encode_to_vec(&model, super::config()).unwrap());
        out
    }

    impl ClassificationTree {
        /// Class counts of every node, summed up from the leaves (children
        /// come after their parents), give each node's class fractions and
        /// the Gini importances.
        fn upgrade(self) -> MlResult<Tree> {
            let k = self.n_classes as usize;
            let bad = || MlError::corrupt("decision tree artifact: a node points outside the tree");
            let n = self.nodes.len();
            let mut counts = vec![0.0f64; n * k];
            for i in (0..n).rev() {
                match self.nodes[i] {
                    Node::Leaf { leaf, .. } => {
                        let from = self
                            .leaf_counts
                            .get(leaf as usize * k..(leaf as usize + 1) * k)
                            .ok_or_else(bad)?;
                        for (c, &v) in counts[i * k..(i + 1) * k].iter_mut().zip(from) {
                            *c = f64::from(v);
                        }
                    }
                    Node::Split { left, right, .. } => {
                        let (l, r) = (left as usize, right as usize);
                        if l <= i || r <= i || l >= n || r >= n {
                            return Err(bad());
                        }
                        for c in 0..k {
                            counts[i * k + c] = counts[l * k + c] + counts[r * k + c];
                        }
                    }
                }
            }
            let total = |i: usize| counts[i * k..(i + 1) * k].iter().sum::<f64>();
            let gini = |i: usize| {
                let t = total(i);
                if t == 0.0 {
                    0.0
                } else {
                    t - counts[i * k..(i + 1) * k]
                        .iter()
                        .map(|c| c * c)
                        .sum::<f64>()
                        / t
                }
            };
            let mut importances = vec![0.0; self.n_features as usize];
            let mut values = Vec::with_capacity(n * k);
            let mut nodes = Vec::with_capacity(n);
            for (i, node) in self.nodes.iter().enumerate() {
                let t = total(i);
                match *node {
                    Node::Leaf { class, .. } => {
                        nodes.push(TreeNode::Leaf { class });
                        // A leaf no training row reached: all weight on its class.
                        values.extend((0..k).map(|c| match t {
                            0.0 => f64::from(c as u32 == class),
                            _ => counts[i * k + c] / t,
                        }));
                    }
                    Node::Split {
                        feature,
                        threshold,
                        left,
                        right,
                    } => {
                        nodes.push(TreeNode::Split {
                            feature,
                            threshold,
                            left,
                            right,
                        });
                        values.extend((0..k).map(|c| {
                            if t == 0.0 {
                                0.0
                            } else {
                                counts[i * k + c] / t
                            }
                        }));
                        if let Some(slot) = importances.get_mut(feature as usize) {
                            *slot += gini(i) - gini(left as usize) - gini(right as usize);
                        }
                    }
                }
            }
            let sum: f64 = importances.iter().sum();
            importances
                .iter_mut()
                .for_each(|v| *v = if sum > 0.0 { *v / sum } else { 0.0 });
            Ok(Tree {
                n_features: self.n_features,
                n_outputs: self.n_classes,
                nodes,
                values,
                importances,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ml::algorithms::Estimator;
    use crate::ml::dataset::{Dataset, LabelKind, RawLabels};
    use crate::ml::model::train_with_defaults;
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
        train_with_defaults(&d, "decision_tree", 42, 1).model
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
            "linear_regression",
            m.task,
            m.inputs.clone(),
            m.labels.clone(),
            Estimator::Linear(crate::ml::algorithms::LinearModel {
                intercept: 1e9,
                coefficients: vec![0.0; m.feature_names.len()],
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
    fn a_0_1_0_artifact_still_predicts_as_it_did() {
        let bytes = v1::two_leaf_tree();
        let m = decode_verified(&bytes, &sha256_hex(&bytes)).unwrap();
        assert_eq!(m.algorithm, "decision_tree");
        assert_eq!(m.predict_label(&[1.0, 0.0]), "no");
        assert_eq!(m.predict_label(&[3.0, 0.0]), "yes");
        assert_eq!(
            m.predict_proba(&[3.0, 0.0]).unwrap(),
            vec![2.0 / 7.0, 5.0 / 7.0]
        );
        let Estimator::Tree(tree) = &m.estimator else {
            panic!("{:?}", m.estimator)
        };
        assert_eq!(tree.value(0), &[5.0 / 10.0, 5.0 / 10.0]);
        assert_eq!(tree.importances, vec![1.0, 0.0]);
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
