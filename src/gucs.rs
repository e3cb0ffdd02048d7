//! Every setting of the extension, all named `ambient.*`. The training
//! limits protect the server from its users, so only superusers may change
//! them (`Suset`).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static MODEL_CACHE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(16);
static MODEL_CACHE_MEMORY_KB: GucSetting<i32> = GucSetting::<i32>::new(256 * 1024);
static MAX_TRAINING_MEMORY_KB: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);
static MAX_TRAINING_ROWS: GucSetting<i32> = GucSetting::<i32>::new(10_000_000);
static MAX_CLASSES: GucSetting<i32> = GucSetting::<i32>::new(100);
static TRAINING_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
static PROGRESS: GucSetting<bool> = GucSetting::<bool>::new(true);
static LOG_ROWS_PER_PROJECT: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static SNAPSHOT_COPY_QUOTA_KB: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);

pub fn init() {
    GucRegistry::define_int_guc(
        c"ambient.snapshot_copy_quota",
        c"Disk all training-data copies (train(..., snapshot => 'copy')) may take together.",
        c"A train whose copy would take the copies past it is refused (54000) and leaves nothing behind; dropping a model drops its copy.",
        &SNAPSHOT_COPY_QUOTA_KB,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"ambient.model_cache_size",
        c"Decoded models each backend keeps for predict.",
        c"Least recently used models are dropped beyond this many. 0 turns the cache off.",
        &MODEL_CACHE_SIZE,
        0,
        10_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ambient.model_cache_memory",
        c"Memory each backend's decoded models for predict may take.",
        c"Least recently used models are dropped beyond it; a model larger than it is decoded for each statement instead of kept.",
        &MODEL_CACHE_MEMORY_KB,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"ambient.max_training_memory",
        c"Memory one training may take for its data and fit.",
        c"Training is refused (53200) before it allocates more. Its memory is outside Postgres's accounting.",
        &MAX_TRAINING_MEMORY_KB,
        1024,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"ambient.max_training_rows",
        c"Rows one training may read from its source.",
        c"Training is refused (54000) when the source has more.",
        &MAX_TRAINING_ROWS,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ambient.max_classes",
        c"Classes a classification target may have.",
        c"An integer target with more distinct values is inferred to be a regression target; an explicit classification with more is refused (54000).",
        &MAX_CLASSES,
        2,
        100_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ambient.training_threads",
        c"Threads one training may use (forest trees, folds, trials).",
        c"0 uses every core; more than the cores counts as the cores. Only the backend's own thread calls into Postgres.",
        &TRAINING_THREADS,
        0,
        1024,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"ambient.log_rows_per_project",
        c"Rows each project keeps in each run log (monitor, drift, policy runs, alerts).",
        c"Older rows are deleted as new ones are written, so scheduled runs keep a bounded history.",
        &LOG_ROWS_PER_PROJECT,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"ambient.progress",
        c"Whether long training reports its progress as NOTICEs.",
        c"A search reports each trial as it ends.",
        &PROGRESS,
        GucContext::Userset,
        GucFlags::default(),
    );
}

pub fn model_cache_size() -> usize {
    MODEL_CACHE_SIZE.get().max(0) as usize
}

pub fn model_cache_memory_bytes() -> u64 {
    MODEL_CACHE_MEMORY_KB.get().max(0) as u64 * 1024
}

pub fn max_training_memory_bytes() -> u64 {
    MAX_TRAINING_MEMORY_KB.get().max(0) as u64 * 1024
}

pub fn max_training_rows() -> u64 {
    MAX_TRAINING_ROWS.get().max(0) as u64
}

pub fn max_classes() -> usize {
    MAX_CLASSES.get().max(0) as usize
}

pub fn training_threads() -> usize {
    let cores = crate::ml::parallel::available_threads();
    match TRAINING_THREADS.get() {
        n if n <= 0 => cores,
        n => (n as usize).min(cores),
    }
}

pub fn log_rows_per_project() -> i64 {
    i64::from(LOG_ROWS_PER_PROJECT.get().max(1))
}

pub fn progress() -> bool {
    PROGRESS.get()
}

/// Bytes all training-data copies may take together.
pub fn snapshot_copy_quota_bytes() -> u64 {
    SNAPSHOT_COPY_QUOTA_KB.get().max(0) as u64 * 1024
}
