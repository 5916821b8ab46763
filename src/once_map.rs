//! Values computed at most once per key and run, however many nodes ask at the same time:
//! the first computes, the others wait for its answer (a failure is not kept: the next asks
//! again).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub struct OnceMap<K, V> {
    cells: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for OnceMap<K, V> {
    fn default() -> Self {
        OnceMap {
            cells: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> OnceMap<K, V> {
    /// The value of `key`, computed by `init` if no one has computed it yet.
    pub async fn get_or_try_init<E, F, Fut>(&self, key: K, init: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        self.cell(key).get_or_try_init(init).await.cloned()
    }

    /// The value of `key`, computed by `init` if no one has computed it yet.
    pub async fn get_or_init<F, Fut>(&self, key: K, init: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = V>,
    {
        self.cell(key).get_or_init(init).await.clone()
    }

    fn cell(&self, key: K) -> Arc<OnceCell<V>> {
        self.cells
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_askers_compute_once_per_key() {
        let map: Arc<OnceMap<&'static str, usize>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (map, runs) = (map.clone(), runs.clone());
            let key = if i % 4 == 3 { "other" } else { "context" };
            tasks.push(tokio::spawn(async move {
                map.get_or_try_init(key, || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    Ok::<_, ()>(key.len())
                })
                .await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2, "one computation per key");
        // A failure is not kept.
        let failed = map
            .get_or_try_init("new", || async { Err::<usize, _>("no") })
            .await;
        assert_eq!(failed, Err("no"));
        let ok = map
            .get_or_try_init("new", || async { Ok::<_, &str>(3) })
            .await;
        assert_eq!(ok, Ok(3));
    }
}
