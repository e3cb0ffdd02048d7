//! `svm`: support vector machines, as scikit-learn's `SVC` (C-SVC, one
//! machine per pair of classes) and `SVR` (epsilon-SVR), both solved by
//! libsvm's method: SMO with second-order working-set selection (Fan, Chen
//! and Lin, JMLR 2005) over a kernel-row cache of bounded size.
//!
//! linfa-svm 0.8.1 has the same solver, but it cannot be stopped (up to
//! max(10^7, 100 × rows) iterations with no hook) and it builds a dense
//! rows × rows kernel matrix (800 MB at 10,000 rows). Here the solver asks
//! for interrupts every few iterations, and kernel rows are computed when
//! needed and kept in a cache of at most `KERNEL_CACHE_BYTES` per machine,
//! counted in the memory estimate before anything is allocated.
//!
//! Probabilities follow libsvm: Platt's sigmoid per pair of classes, fitted
//! on the training rows' decision values (libsvm fits it on 5-fold
//! cross-validated values, which costs five more fits), then coupled across
//! pairs (Wu, Lin and Weng 2004). The predicted class is the most probable
//! one, so the class and the probabilities always agree. The artifact holds
//! the support vectors, which are training rows verbatim; like every
//! artifact it is readable only by the extension owner.

use serde::{Deserialize, Serialize};

use super::logistic_regression::argmax;
use super::{AlgorithmSpec, Estimator, InputStyle, Predictor, Shape, TaskParams, TrainingData};
use crate::ml::hyperparams::{Hyperparams, ParamKind, ParamSpec};
use crate::ml::{parallel, Interrupts, MlError, MlResult, Task};

/// The most the kernel-row caches of the machines solved at once take
/// together (scikit-learn's default `cache_size` is 200 MB per fit).
const KERNEL_CACHE_BYTES: u64 = 64 << 20;

/// Classes a classifier may have: it solves a machine per pair, and
/// couples pairwise probabilities in classes² per predicted row.
const MAX_CLASSES: usize = 100;

/// libsvm's floor for a non-positive curvature.
const TAU: f64 = 1e-12;

/// scikit-learn's `SVC` parameters (`C` spelt `c`; `gamma` null is its
/// "scale": 1 / (features × the variance of every training value)).
const CLASSIFICATION: [ParamSpec; 7] = [
    ParamSpec {
        name: "c",
        kind: ParamKind::Float {
            min: f64::MIN_POSITIVE,
            max: 1e9,
            nullable: false,
        },
        default: "1.0",
    },
    ParamSpec {
        name: "kernel",
        kind: ParamKind::Choice(&["rbf", "linear", "poly", "sigmoid"]),
        default: "\"rbf\"",
    },
    ParamSpec {
        name: "gamma",
        kind: ParamKind::Float {
            min: f64::MIN_POSITIVE,
            max: 1e9,
            nullable: true,
        },
        default: "null",
    },
    ParamSpec {
        name: "degree",
        kind: ParamKind::Integer {
            min: 1,
            max: 10,
            nullable: false,
        },
        default: "3",
    },
    ParamSpec {
        name: "coef0",
        kind: ParamKind::Float {
            min: -1e9,
            max: 1e9,
            nullable: false,
        },
        default: "0.0",
    },
    ParamSpec {
        name: "tol",
        kind: ParamKind::Float {
            min: f64::MIN_POSITIVE,
            max: 1.0,
            nullable: false,
        },
        default: "0.001",
    },
    ParamSpec {
        name: "max_iterations",
        kind: ParamKind::Integer {
            min: 1,
            max: 1_000_000_000,
            nullable: true,
        },
        default: "null",
    },
];

/// `SVR`'s: the same, and the width of the tube inside which errors cost
/// nothing.
const REGRESSION: [ParamSpec; 8] = {
    let mut params = [ParamSpec {
        name: "epsilon",
        kind: ParamKind::Float {
            min: 0.0,
            max: 1e9,
            nullable: false,
        },
        default: "0.1",
    }; 8];
    let mut i = 0;
    while i < CLASSIFICATION.len() {
        params[i] = CLASSIFICATION[i];
        i += 1;
    }
    params
};

pub const SPEC: AlgorithmSpec = AlgorithmSpec {
    name: "svm",
    description: "support vector machine (scikit-learn's SVC and SVR, libsvm's solver)",
    tasks: &[
        TaskParams {
            task: Task::Classification,
            params: &CLASSIFICATION,
        },
        TaskParams {
            task: Task::Regression,
            params: &REGRESSION,
        },
    ],
    inputs: InputStyle::Scaled,
    fit,
    estimated_bytes,
};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Kernel {
    Linear,
    Rbf { gamma: f64 },
    Poly { gamma: f64, coef0: f64, degree: u32 },
    Sigmoid { gamma: f64, coef0: f64 },
}

impl Kernel {
    fn eval(&self, a: &[f64], b: &[f64]) -> f64 {
        let dot = || a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
        match *self {
            Kernel::Linear => dot(),
            Kernel::Rbf { gamma } => {
                let squared: f64 = a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum();
                (-gamma * squared).exp()
            }
            Kernel::Poly {
                gamma,
                coef0,
                degree,
            } => (gamma * dot() + coef0).powi(degree as i32),
            Kernel::Sigmoid { gamma, coef0 } => (gamma * dot() + coef0).tanh(),
        }
    }

    fn is_finite(&self) -> bool {
        match *self {
            Kernel::Linear => true,
            Kernel::Rbf { gamma } => gamma.is_finite(),
            Kernel::Poly { gamma, coef0, .. } | Kernel::Sigmoid { gamma, coef0 } => {
                gamma.is_finite() && coef0.is_finite()
            }
        }
    }
}

/// One machine's decision function, `Σ coef·K(support, x) − rho`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// The pair of classes it tells apart (a positive value means
    /// `positive`); both 0 for a regressor.
    pub positive: u32,
    pub negative: u32,
    /// Rows of `Svm::support` it uses, and their coefficients.
    pub support_index: Vec<u32>,
    pub coef: Vec<f64>,
    pub rho: f64,
    /// Platt's sigmoid: P(positive) = 1 / (1 + exp(a·decision + b)).
    pub platt_a: f64,
    pub platt_b: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Svm {
    pub kernel: Kernel,
    pub n_features: u32,
    /// Classes of a classifier; 0 for a regressor.
    pub n_classes: u32,
    /// The support vectors of every machine, row-major, each once.
    pub support: Vec<f64>,
    pub machines: Vec<Machine>,
}

impl Svm {
    pub fn validate(&self, n_features: usize, n_classes: usize) -> MlResult<()> {
        let bad = || Err(MlError::corrupt("svm artifact: misshapen"));
        if self.n_features as usize != n_features
            || self.n_classes as usize != n_classes
            || n_features == 0
            || !self.support.len().is_multiple_of(n_features)
            || !self.kernel.is_finite()
            || self.machines.is_empty()
            || (n_classes == 0 && self.machines.len() != 1)
        {
            return bad();
        }
        let n_support = self.support.len() / n_features;
        for m in &self.machines {
            let classes_fit = if n_classes == 0 {
                m.positive == 0 && m.negative == 0
            } else {
                m.positive != m.negative && (m.positive.max(m.negative) as usize) < n_classes
            };
            if !classes_fit
                || m.coef.len() != m.support_index.len()
                || m.support_index.iter().any(|&s| s as usize >= n_support)
            {
                return bad();
            }
        }
        Ok(())
    }

    /// The kernel between `x` and every support vector.
    fn kernel_values(&self, x: &[f64]) -> Vec<f64> {
        self.support
            .chunks_exact(self.n_features as usize)
            .map(|s| self.kernel.eval(s, x))
            .collect()
    }

    fn class_probabilities(&self, x: &[f64]) -> Vec<f64> {
        let k = self.kernel_values(x);
        let n = self.n_classes as usize;
        // Pairwise P(row | one of the pair); classes no machine knows
        // (absent from the training rows) stay at 0.
        let mut pairwise = vec![0.0; n * n];
        let mut present = vec![false; n];
        for m in &self.machines {
            let (a, b) = (m.positive as usize, m.negative as usize);
            let p =
                platt_probability(decision(m, &k), m.platt_a, m.platt_b).clamp(1e-7, 1.0 - 1e-7);
            pairwise[a * n + b] = p;
            pairwise[b * n + a] = 1.0 - p;
            present[a] = true;
            present[b] = true;
        }
        let classes: Vec<usize> = (0..n).filter(|&c| present[c]).collect();
        let coupled = couple(&classes, &pairwise, n);
        let mut out = vec![0.0; n];
        for (&c, p) in classes.iter().zip(coupled) {
            out[c] = p;
        }
        out
    }
}

fn decision(machine: &Machine, kernel_values: &[f64]) -> f64 {
    machine
        .support_index
        .iter()
        .zip(&machine.coef)
        .map(|(&s, c)| c * kernel_values[s as usize])
        .sum::<f64>()
        - machine.rho
}

impl Predictor for Svm {
    fn predict(&self, x: &[f64]) -> f64 {
        if self.n_classes > 0 {
            return argmax(&self.class_probabilities(x)) as f64;
        }
        decision(&self.machines[0], &self.kernel_values(x))
    }

    fn predict_proba(&self, x: &[f64]) -> Option<Vec<f64>> {
        (self.n_classes > 0).then(|| self.class_probabilities(x))
    }
}

/// Rows that one machine of a fit on `shape` solves for: a pair of classes
/// holds at most every row; a regressor has two variables per row.
fn variables(shape: &Shape) -> u64 {
    let rows = shape.rows as u64;
    if shape.classes == 0 {
        2 * rows
    } else {
        rows
    }
}

/// Kernel rows of `points` values that fit in `bytes`, at least the two a
/// solver step needs.
fn cache_rows(points: u64, bytes: u64) -> u64 {
    (bytes / (points.max(1) * 8)).clamp(2, points.max(2))
}

/// Machines a fit on `shape` solves at once.
fn machines_at_once(classes: usize, threads: usize) -> usize {
    match classes {
        0 => 1,
        k => (k * (k - 1) / 2).clamp(1, threads.max(1)),
    }
}

/// The copy of the rows and of the support vectors; per machine solved at
/// once, its variables (alpha, gradient, linear term, sign), its rows
/// (indices, members, signs, diagonal, cache slots and stamps) and its
/// share of the kernel-row cache (at least two rows); and the finished
/// machines' coefficients (at most one per row and other class).
fn estimated_bytes(shape: &Shape, _: &Hyperparams) -> u64 {
    let rows = shape.rows as u64;
    let data = 2 * rows * shape.features as u64 * 8;
    let at_once = machines_at_once(shape.classes, shape.threads) as u64;
    let cache = cache_rows(rows, KERNEL_CACHE_BYTES / at_once) * rows * 8;
    let per_machine = 4 * variables(shape) * 8 + 9 * rows * 8 + cache;
    let finished = rows * shape.classes.saturating_sub(1).max(1) as u64 * 16;
    data + at_once * per_machine + finished
}

fn kernel_of(data: &TrainingData<'_>, x: &[f64]) -> Kernel {
    let params = data.params;
    let gamma = params.float("gamma").unwrap_or_else(|| {
        // scikit-learn's "scale": 1 / (features × variance of all values).
        let n = x.len().max(1) as f64;
        let mean = x.iter().sum::<f64>() / n;
        let variance = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        if variance > 0.0 {
            1.0 / (data.dataset.width() as f64 * variance)
        } else {
            1.0
        }
    });
    let coef0 = params.float("coef0").unwrap_or(0.0);
    match params.text("kernel").unwrap_or("rbf") {
        "linear" => Kernel::Linear,
        "poly" => Kernel::Poly {
            gamma,
            coef0,
            degree: params.integer("degree").unwrap_or(3) as u32,
        },
        "sigmoid" => Kernel::Sigmoid { gamma, coef0 },
        _ => Kernel::Rbf { gamma },
    }
}

fn fit(data: &TrainingData<'_>) -> MlResult<Estimator> {
    data.interrupts.check()?;
    let f = data.dataset.width();
    let mut x = Vec::with_capacity(data.rows.len() * f);
    for &i in data.rows {
        x.extend_from_slice(data.dataset.row(i));
    }
    let kernel = kernel_of(data, &x);
    let settings = |cache_bytes| Settings {
        c: data.params.float("c").unwrap_or(1.0),
        tol: data.params.float("tol").unwrap_or(1e-3),
        max_iterations: data.params.integer("max_iterations").map(|n| n as u64),
        cache_bytes,
    };
    let points = Points {
        x: &x,
        features: f,
        kernel,
    };
    let (machines, n_classes) = match data.class_indices() {
        Some((_, n_classes)) if n_classes > MAX_CLASSES => {
            return Err(MlError::invalid(format!(
                "svm takes at most {MAX_CLASSES} classes, and the label has {n_classes}"
            ))
            .with_hint("gbm, random_forest or logistic_regression take more"))
        }
        Some((classes, n_classes)) => {
            let mut members = vec![Vec::new(); n_classes];
            for (row, &class) in classes.iter().enumerate() {
                members[class].push(row);
            }
            let pairs: Vec<(usize, usize)> = (0..n_classes)
                .flat_map(|a| (a + 1..n_classes).map(move |b| (a, b)))
                .filter(|&(a, b)| !members[a].is_empty() && !members[b].is_empty())
                .collect();
            if pairs.is_empty() {
                return Err(MlError::insufficient(
                    "svm needs training rows of at least two classes",
                ));
            }
            let settings = settings(
                KERNEL_CACHE_BYTES
                    / machines_at_once(n_classes, data.threads.min(pairs.len())) as u64,
            );
            let machines = parallel::run(
                pairs.len(),
                data.threads,
                data.interrupts,
                |p, interrupts| {
                    let (a, b) = pairs[p];
                    let rows: Vec<usize> = members[a].iter().chain(&members[b]).copied().collect();
                    let signs: Vec<f64> = rows
                        .iter()
                        .map(|&r| if classes[r] == a { 1.0 } else { -1.0 })
                        .collect();
                    classifier(&points, &rows, &signs, (a, b), &settings, interrupts)
                },
            )?;
            (machines, n_classes)
        }
        None => {
            let targets = data.targets();
            let epsilon = data.params.float("epsilon").unwrap_or(0.1);
            let all: Vec<usize> = (0..data.rows.len()).collect();
            let settings = settings(KERNEL_CACHE_BYTES);
            let machine = regressor(
                &points,
                &all,
                targets.as_slice().expect("contiguous targets"),
                epsilon,
                &settings,
                data.interrupts,
            )?;
            (vec![machine], 0)
        }
    };
    Ok(Estimator::Svm(pool_support(
        machines, &x, f, kernel, n_classes,
    )))
}

/// Gathers the machines' support vectors into one table (a row several
/// machines use is kept once) and points each machine into it.
fn pool_support(
    machines: Vec<(Machine, Vec<usize>)>,
    x: &[f64],
    features: usize,
    kernel: Kernel,
    n_classes: usize,
) -> Svm {
    let mut rows: Vec<usize> = machines
        .iter()
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    rows.sort_unstable();
    rows.dedup();
    let mut support = Vec::with_capacity(rows.len() * features);
    for &r in &rows {
        support.extend_from_slice(&x[r * features..(r + 1) * features]);
    }
    let machines = machines
        .into_iter()
        .map(|(mut m, used)| {
            m.support_index = used
                .iter()
                .map(|r| rows.binary_search(r).expect("pooled above") as u32)
                .collect();
            m
        })
        .collect();
    Svm {
        kernel,
        n_features: features as u32,
        n_classes: n_classes as u32,
        support,
        machines,
    }
}

struct Settings {
    c: f64,
    tol: f64,
    max_iterations: Option<u64>,
    cache_bytes: u64,
}

/// The training rows, row-major, and the kernel between them.
struct Points<'a> {
    x: &'a [f64],
    features: usize,
    kernel: Kernel,
}

impl Points<'_> {
    fn row(&self, r: usize) -> &[f64] {
        &self.x[r * self.features..(r + 1) * self.features]
    }

    fn kernel(&self, a: usize, b: usize) -> f64 {
        self.kernel.eval(self.row(a), self.row(b))
    }
}

/// C-SVC for one pair of classes: `signs` is +1 for `classes.0`. Returns
/// the machine (support indices still to be pooled) and the rows of `x` it
/// uses.
fn classifier(
    points: &Points<'_>,
    rows: &[usize],
    signs: &[f64],
    classes: (usize, usize),
    settings: &Settings,
    interrupts: &Interrupts<'_>,
) -> MlResult<(Machine, Vec<usize>)> {
    let problem = Problem {
        points,
        rows,
        signs: signs.to_vec(),
        linear: vec![-1.0; rows.len()],
    };
    let solution = problem.solve(settings, interrupts)?;
    // The gradient is y·(Σ y·alpha·K) − 1 at every row, so the training
    // decision values come free.
    let decisions: Vec<f64> = (0..rows.len())
        .map(|t| signs[t] * (solution.gradient[t] + 1.0) - solution.rho)
        .collect();
    let positive: Vec<bool> = signs.iter().map(|&s| s > 0.0).collect();
    let (platt_a, platt_b) = platt_fit(&decisions, &positive, interrupts)?;
    let (used, coef) = (0..rows.len())
        .filter(|&t| solution.alpha[t] > 0.0)
        .map(|t| (rows[t], signs[t] * solution.alpha[t]))
        .unzip();
    Ok((
        Machine {
            positive: classes.0 as u32,
            negative: classes.1 as u32,
            support_index: Vec::new(),
            coef,
            rho: solution.rho,
            platt_a,
            platt_b,
        },
        used,
    ))
}

/// epsilon-SVR: variables `t` and `t + n` of row `t` are its alpha and
/// alpha*, its coefficient their difference.
fn regressor(
    points: &Points<'_>,
    rows: &[usize],
    targets: &[f64],
    epsilon: f64,
    settings: &Settings,
    interrupts: &Interrupts<'_>,
) -> MlResult<(Machine, Vec<usize>)> {
    let n = rows.len();
    let problem = Problem {
        points,
        rows,
        signs: (0..2 * n).map(|t| if t < n { 1.0 } else { -1.0 }).collect(),
        linear: (0..2 * n)
            .map(|t| {
                if t < n {
                    epsilon - targets[t]
                } else {
                    epsilon + targets[t - n]
                }
            })
            .collect(),
    };
    let solution = problem.solve(settings, interrupts)?;
    let (used, coef) = (0..n)
        .map(|t| (rows[t], solution.alpha[t] - solution.alpha[t + n]))
        .filter(|(_, c)| *c != 0.0)
        .unzip();
    Ok((
        Machine {
            positive: 0,
            negative: 0,
            support_index: Vec::new(),
            coef,
            rho: solution.rho,
            platt_a: 0.0,
            platt_b: 0.0,
        },
        used,
    ))
}

/// libsvm's dual: minimise ½·αᵀQα + linearᵀα subject to signsᵀα = 0 and
/// 0 ≤ α ≤ C, where Q[s][t] = sign_s·sign_t·K(point of s, point of t) and
/// variable `t` stands for row `rows[t % rows.len()]`.
struct Problem<'a> {
    points: &'a Points<'a>,
    rows: &'a [usize],
    signs: Vec<f64>,
    linear: Vec<f64>,
}

struct Solution {
    alpha: Vec<f64>,
    gradient: Vec<f64>,
    rho: f64,
}

impl Problem<'_> {
    fn solve(&self, settings: &Settings, interrupts: &Interrupts<'_>) -> MlResult<Solution> {
        let n = self.rows.len();
        let vars = self.signs.len();
        let c = settings.c;
        let y = &self.signs;
        let diagonal: Vec<f64> = (0..n)
            .map(|t| self.points.kernel(self.rows[t], self.rows[t]))
            .collect();
        let mut cache = KernelCache::new(self.points, self.rows, settings.cache_bytes);
        let mut alpha = vec![0.0; vars];
        let mut gradient = self.linear.clone();
        // libsvm's safeguard when no limit is given.
        let limit = settings
            .max_iterations
            .unwrap_or_else(|| (100 * vars as u64).max(10_000_000));
        for _ in 0..limit {
            // Every iteration scans every variable (and may compute a kernel
            // row), so a check per iteration costs nothing next to it.
            interrupts.check()?;
            let Some((i, j)) = self.select(&alpha, &gradient, &diagonal, &mut cache, settings)
            else {
                break;
            };
            let (pi, pj) = (i % n, j % n);
            cache.load(pj, pi);
            let (ki, kj) = (cache.row(pi), cache.row(pj));
            let k_ij = ki[pj];
            let curvature = positive_or_tau(diagonal[pi] + diagonal[pj] - 2.0 * k_ij);
            let (old_i, old_j) = (alpha[i], alpha[j]);
            if y[i] != y[j] {
                let delta = (-gradient[i] - gradient[j]) / curvature;
                let diff = alpha[i] - alpha[j];
                alpha[i] += delta;
                alpha[j] += delta;
                if diff > 0.0 {
                    if alpha[j] < 0.0 {
                        alpha[j] = 0.0;
                        alpha[i] = diff;
                    }
                } else if alpha[i] < 0.0 {
                    alpha[i] = 0.0;
                    alpha[j] = -diff;
                }
                if diff > 0.0 {
                    if alpha[i] > c {
                        alpha[i] = c;
                        alpha[j] = c - diff;
                    }
                } else if alpha[j] > c {
                    alpha[j] = c;
                    alpha[i] = c + diff;
                }
            } else {
                let delta = (gradient[i] - gradient[j]) / curvature;
                let sum = alpha[i] + alpha[j];
                alpha[i] -= delta;
                alpha[j] += delta;
                if sum > c {
                    if alpha[i] > c {
                        alpha[i] = c;
                        alpha[j] = sum - c;
                    }
                } else if alpha[j] < 0.0 {
                    alpha[j] = 0.0;
                    alpha[i] = sum;
                }
                if sum > c {
                    if alpha[j] > c {
                        alpha[j] = c;
                        alpha[i] = sum - c;
                    }
                } else if alpha[i] < 0.0 {
                    alpha[i] = 0.0;
                    alpha[j] = sum;
                }
            }
            let (step_i, step_j) = ((alpha[i] - old_i) * y[i], (alpha[j] - old_j) * y[j]);
            for t in 0..vars {
                let p = t % n;
                gradient[t] += y[t] * (ki[p] * step_i + kj[p] * step_j);
            }
        }
        let rho = self.rho(&alpha, &gradient, c);
        if !rho.is_finite() || alpha.iter().any(|a| !a.is_finite()) {
            return Err(MlError::insufficient(
                "the svm solver reached non-finite values",
            )
            .with_hint("the kernel overflows on these values: lower degree or gamma, or scale the inputs"));
        }
        Ok(Solution {
            alpha,
            gradient,
            rho,
        })
    }

    /// libsvm's second-order working-set selection: `i` violates the
    /// optimality conditions most, `j` gives the largest decrease with it;
    /// none when the violation is within `tol`.
    fn select(
        &self,
        alpha: &[f64],
        gradient: &[f64],
        diagonal: &[f64],
        cache: &mut KernelCache<'_>,
        settings: &Settings,
    ) -> Option<(usize, usize)> {
        let (n, y, c) = (self.rows.len(), &self.signs, settings.c);
        let can_rise = |t: usize| {
            if y[t] > 0.0 {
                alpha[t] < c
            } else {
                alpha[t] > 0.0
            }
        };
        let can_fall = |t: usize| {
            if y[t] > 0.0 {
                alpha[t] > 0.0
            } else {
                alpha[t] < c
            }
        };
        let mut most = f64::NEG_INFINITY;
        let mut i = None;
        for t in 0..y.len() {
            if can_rise(t) && -y[t] * gradient[t] >= most {
                most = -y[t] * gradient[t];
                i = Some(t);
            }
        }
        let i = i?;
        let pi = i % n;
        cache.load(pi, pi);
        let ki = cache.row(pi);
        let mut least = f64::NEG_INFINITY;
        let mut best = (f64::INFINITY, None);
        for t in 0..y.len() {
            if !can_fall(t) {
                continue;
            }
            let violation = y[t] * gradient[t];
            least = least.max(violation);
            let gap = most + violation;
            if gap > 0.0 {
                let p = t % n;
                let curvature = positive_or_tau(diagonal[pi] + diagonal[p] - 2.0 * ki[p]);
                let decrease = -(gap * gap) / curvature;
                if decrease <= best.0 {
                    best = (decrease, Some(t));
                }
            }
        }
        if most + least < settings.tol {
            return None;
        }
        best.1.map(|j| (i, j))
    }

    /// The bias: the mean of y·gradient over free variables, or the middle
    /// of its bounds when none is free.
    fn rho(&self, alpha: &[f64], gradient: &[f64], c: f64) -> f64 {
        let (mut upper, mut lower) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut free, mut sum) = (0usize, 0.0);
        for (t, &y) in self.signs.iter().enumerate() {
            let yg = y * gradient[t];
            let at_upper = alpha[t] >= c;
            let at_lower = alpha[t] <= 0.0;
            if (at_upper && y < 0.0) || (at_lower && y > 0.0) {
                upper = upper.min(yg);
            } else if at_upper || at_lower {
                lower = lower.max(yg);
            } else {
                free += 1;
                sum += yg;
            }
        }
        if free > 0 {
            sum / free as f64
        } else {
            (upper + lower) / 2.0
        }
    }
}

fn positive_or_tau(curvature: f64) -> f64 {
    if curvature > 0.0 {
        curvature
    } else {
        TAU
    }
}

/// Kernel rows of one machine's points, computed when first needed and kept
/// up to `KERNEL_CACHE_BYTES`; the least recently used goes first.
struct KernelCache<'a> {
    points: &'a Points<'a>,
    rows: &'a [usize],
    cached: Vec<Option<Vec<f64>>>,
    last_used: Vec<u64>,
    clock: u64,
    held: usize,
    capacity: usize,
}

impl<'a> KernelCache<'a> {
    fn new(points: &'a Points<'a>, rows: &'a [usize], bytes: u64) -> Self {
        let n = rows.len();
        KernelCache {
            points,
            rows,
            cached: vec![None; n],
            last_used: vec![0; n],
            clock: 0,
            held: 0,
            capacity: cache_rows(n as u64, bytes) as usize,
        }
    }

    /// Makes row `p` available, never evicting row `keep`.
    fn load(&mut self, p: usize, keep: usize) {
        self.clock += 1;
        self.last_used[p] = self.clock;
        if self.cached[p].is_some() {
            return;
        }
        if self.held >= self.capacity {
            let oldest = (0..self.rows.len())
                .filter(|&q| q != keep && self.cached[q].is_some())
                .min_by_key(|&q| self.last_used[q])
                .expect("the capacity is at least two rows");
            self.cached[oldest] = None;
            self.held -= 1;
        }
        let a = self.rows[p];
        self.cached[p] = Some(
            self.rows
                .iter()
                .map(|&b| self.points.kernel(a, b))
                .collect(),
        );
        self.held += 1;
    }

    fn row(&self, p: usize) -> &[f64] {
        self.cached[p].as_deref().expect("loaded before use")
    }
}

/// Platt's sigmoid for P(positive | decision), fitted by Newton's method
/// with backtracking on regularised targets (Lin, Lin and Weng's version,
/// as in libsvm).
fn platt_fit(
    decisions: &[f64],
    positive: &[bool],
    interrupts: &Interrupts<'_>,
) -> MlResult<(f64, f64)> {
    let ones = positive.iter().filter(|&&p| p).count() as f64;
    let zeros = positive.len() as f64 - ones;
    let (high, low) = ((ones + 1.0) / (ones + 2.0), 1.0 / (zeros + 2.0));
    let targets: Vec<f64> = positive
        .iter()
        .map(|&p| if p { high } else { low })
        .collect();
    let loss = |a: f64, b: f64| -> f64 {
        decisions
            .iter()
            .zip(&targets)
            .map(|(d, t)| {
                let z = d * a + b;
                if z >= 0.0 {
                    t * z + (-z).exp().ln_1p()
                } else {
                    (t - 1.0) * z + z.exp().ln_1p()
                }
            })
            .sum()
    };
    let (mut a, mut b) = (0.0, ((zeros + 1.0) / (ones + 1.0)).ln());
    let mut value = loss(a, b);
    for _ in 0..100 {
        interrupts.check()?;
        let (mut h11, mut h22, mut h21, mut g1, mut g2) = (1e-12, 1e-12, 0.0, 0.0, 0.0);
        for (d, t) in decisions.iter().zip(&targets) {
            let p = platt_probability(*d, a, b);
            let w = p * (1.0 - p);
            h11 += d * d * w;
            h22 += w;
            h21 += d * w;
            g1 += d * (t - p);
            g2 += t - p;
        }
        if g1.abs() < 1e-5 && g2.abs() < 1e-5 {
            break;
        }
        let det = h11 * h22 - h21 * h21;
        let (da, db) = (-(h22 * g1 - h21 * g2) / det, -(-h21 * g1 + h11 * g2) / det);
        let slope = g1 * da + g2 * db;
        let mut step = 1.0;
        while step >= 1e-10 {
            let (na, nb) = (a + step * da, b + step * db);
            let next = loss(na, nb);
            if next < value + 1e-4 * step * slope {
                (a, b, value) = (na, nb, next);
                break;
            }
            step /= 2.0;
        }
        if step < 1e-10 {
            break;
        }
    }
    Ok((a, b))
}

/// 1 / (1 + exp(a·decision + b)), computed without overflow.
fn platt_probability(decision: f64, a: f64, b: f64) -> f64 {
    let z = decision * a + b;
    if z >= 0.0 {
        (-z).exp() / (1.0 + (-z).exp())
    } else {
        1.0 / (1.0 + z.exp())
    }
}

/// Class probabilities from pairwise ones, `pairwise[i·n + j]` = P(i | i or
/// j), by Wu, Lin and Weng's second method (libsvm's
/// `multiclass_probability`), over `classes` only.
fn couple(classes: &[usize], pairwise: &[f64], n: usize) -> Vec<f64> {
    let k = classes.len();
    if k == 2 {
        return vec![
            pairwise[classes[0] * n + classes[1]],
            pairwise[classes[1] * n + classes[0]],
        ];
    }
    let r = |a: usize, b: usize| pairwise[classes[a] * n + classes[b]];
    let mut q = vec![0.0; k * k];
    for t in 0..k {
        for j in 0..k {
            if j != t {
                q[t * k + t] += r(j, t) * r(j, t);
                q[t * k + j] = -r(j, t) * r(t, j);
            }
        }
    }
    let mut p = vec![1.0 / k as f64; k];
    let mut qp = vec![0.0; k];
    let tolerance = 0.005 / k as f64;
    for _ in 0..k.max(100) {
        let mut pqp = 0.0;
        for t in 0..k {
            qp[t] = (0..k).map(|j| q[t * k + j] * p[j]).sum();
            pqp += p[t] * qp[t];
        }
        if qp.iter().all(|v| (v - pqp).abs() < tolerance) {
            break;
        }
        for t in 0..k {
            let diff = (-qp[t] + pqp) / q[t * k + t];
            p[t] += diff;
            pqp = (pqp + diff * (diff * q[t * k + t] + 2.0 * qp[t])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[t * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cache_bytes: u64) -> Settings {
        Settings {
            c: 1000.0,
            tol: 1e-6,
            max_iterations: None,
            cache_bytes,
        }
    }

    fn classify(
        x: &[f64],
        features: usize,
        signs: &[f64],
        cache_bytes: u64,
    ) -> (Machine, Vec<usize>) {
        let points = Points {
            x,
            features,
            kernel: Kernel::Linear,
        };
        let rows: Vec<usize> = (0..signs.len()).collect();
        classifier(
            &points,
            &rows,
            signs,
            (0, 1),
            &settings(cache_bytes),
            &Interrupts::none(),
        )
        .unwrap()
    }

    #[test]
    fn two_points_give_the_maximum_margin_by_hand() {
        // x = -1 against x = +1: w = -1, b = 0, both support vectors with
        // alpha = 1/2 (|w|² = Σ alpha = 1).
        let (machine, used) = classify(&[-1.0, 1.0], 1, &[1.0, -1.0], KERNEL_CACHE_BYTES);
        assert_eq!(used, vec![0, 1]);
        assert!((machine.coef[0] - 0.5).abs() < 1e-9 && (machine.coef[1] + 0.5).abs() < 1e-9);
        assert!(machine.rho.abs() < 1e-9);
    }

    #[test]
    fn a_cache_of_two_rows_reaches_the_same_solution_as_a_full_one() {
        let mut x = Vec::new();
        let mut signs = Vec::new();
        for i in 0..60 {
            let (a, b) = ((i % 7) as f64, ((i * 5) % 11) as f64);
            x.extend([a, b]);
            signs.push(if a + 0.5 * b > 5.0 { 1.0 } else { -1.0 });
        }
        let full = classify(&x, 2, &signs, KERNEL_CACHE_BYTES);
        let tiny = classify(&x, 2, &signs, 0);
        assert_eq!(full.1, tiny.1);
        for (a, b) in full.0.coef.iter().zip(&tiny.0.coef) {
            assert!((a - b).abs() < 1e-9, "{a} {b}");
        }
        // Dual feasibility: the coefficients sum to zero within C.
        assert!(full.0.coef.iter().sum::<f64>().abs() < 1e-9);
        assert!(full.0.coef.iter().all(|c| c.abs() <= 1000.0 + 1e-9));
    }

    #[test]
    fn a_linear_svr_finds_the_line_inside_its_tube() {
        let x: Vec<f64> = (0..40).map(|i| i as f64 / 4.0).collect();
        let y: Vec<f64> = x.iter().map(|v| 3.0 * v - 2.0).collect();
        let points = Points {
            x: &x,
            features: 1,
            kernel: Kernel::Linear,
        };
        let rows: Vec<usize> = (0..x.len()).collect();
        let (machine, used) = regressor(
            &points,
            &rows,
            &y,
            0.01,
            &settings(KERNEL_CACHE_BYTES),
            &Interrupts::none(),
        )
        .unwrap();
        // The flattest line within 0.01 of every point passes 0.01 above the
        // first and 0.01 below the last: slope 3 − 0.02 / 9.75.
        let slope: f64 = used.iter().zip(&machine.coef).map(|(&r, c)| c * x[r]).sum();
        assert!((slope - (3.0 - 0.02 / 9.75)).abs() < 1e-6, "slope {slope}");
        assert!(
            (-machine.rho - (-2.0 + 0.01)).abs() < 1e-6,
            "intercept {}",
            -machine.rho
        );
    }

    #[test]
    fn the_solver_stops_when_interrupted() {
        let x: Vec<f64> = (0..400).map(|i| ((i * 37) % 101) as f64).collect();
        let signs: Vec<f64> = (0..400)
            .map(|i| if (i * 13) % 7 < 3 { 1.0 } else { -1.0 })
            .collect();
        let points = Points {
            x: &x,
            features: 1,
            kernel: Kernel::Rbf { gamma: 1.0 },
        };
        let rows: Vec<usize> = (0..400).collect();
        let calls = std::cell::Cell::new(0);
        let hook = || {
            calls.set(calls.get() + 1);
            if calls.get() > 3 {
                Err(MlError::invalid("canceled"))
            } else {
                Ok(())
            }
        };
        let err = classifier(
            &points,
            &rows,
            &signs,
            (0, 1),
            &settings(KERNEL_CACHE_BYTES),
            &Interrupts::new(&hook),
        )
        .unwrap_err();
        assert_eq!(err.message, "canceled");
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn a_damaged_model_is_refused_before_it_predicts() {
        let x = [-1.0, 1.0];
        let fitted = classify(&x, 1, &[1.0, -1.0], KERNEL_CACHE_BYTES);
        let model = pool_support(vec![fitted], &x, 1, Kernel::Linear, 2);
        assert!(model.validate(1, 2).is_ok());
        let damaged: [&dyn Fn(&mut Svm); 4] = [
            &|m| m.machines[0].support_index[0] = 7,
            &|m| m.machines[0].positive = 2,
            &|m| {
                m.support.pop();
            },
            &|m| m.kernel = Kernel::Rbf { gamma: f64::NAN },
        ];
        for damage in damaged {
            let mut bad = model.clone();
            damage(&mut bad);
            assert!(bad.validate(1, 2).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn gamma_may_be_null_and_c_may_not() {
        use crate::ml::hyperparams::Hyperparams;
        use serde_json::json;
        let p = Hyperparams::validate("svm", &CLASSIFICATION, &json!({"gamma": null})).unwrap();
        assert_eq!(p.float("gamma"), None);
        assert_eq!(
            Hyperparams::validate("svm", &CLASSIFICATION, &json!({"gamma": 0.5}))
                .unwrap()
                .float("gamma"),
            Some(0.5)
        );
        assert!(Hyperparams::validate("svm", &CLASSIFICATION, &json!({"c": null})).is_err());
        assert!(Hyperparams::validate("svm", &CLASSIFICATION, &json!({"epsilon": 0.1})).is_err());
        assert!(Hyperparams::validate("svm", &REGRESSION, &json!({"epsilon": 0.1})).is_ok());
    }

    #[test]
    fn coupling_three_consistent_pairs_recovers_the_class_probabilities() {
        let truth = [0.5, 0.3, 0.2];
        let mut pairwise = vec![0.0; 9];
        for a in 0..3 {
            for b in 0..3 {
                if a != b {
                    pairwise[a * 3 + b] = truth[a] / (truth[a] + truth[b]);
                }
            }
        }
        let p = couple(&[0, 1, 2], &pairwise, 3);
        for (got, want) in p.iter().zip(truth) {
            assert!((got - want).abs() < 1e-3, "{p:?}");
        }
    }
}
