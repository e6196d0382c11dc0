/// Two results, each an `ObjectRef` of its own.
#[ray::remote(num_returns = 2)]
pub fn min_max(v: Vec<i64>) -> (i64, i64) {
    (*v.iter().min().unwrap(), *v.iter().max().unwrap())
}

/// Items streamed to the caller as they are made.
#[ray::remote(streaming, retry_exceptions = true)]
pub fn countdown(from: u32) -> impl Iterator<Item = u32> {
    (0..from).rev()
}
