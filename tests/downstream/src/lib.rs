//! A library that defines ray tasks and actors in several modules, as a user's crate would.
//! Two tasks share the name `norm` (in different modules), types and actors have private
//! fields, and the crate denies missing docs and unsafe code.

#![deny(missing_docs, unsafe_code)]

/// Points in the plane.
pub mod geometry {
    use serde::{Deserialize, Serialize};

    /// A point with private coordinates.
    #[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Point {
        x: f64,
        y: f64,
    }

    impl Point {
        /// A point at `(x, y)`.
        pub fn new(x: f64, y: f64) -> Point {
            Point { x, y }
        }

        /// Its coordinates.
        pub fn coordinates(&self) -> (f64, f64) {
            (self.x, self.y)
        }
    }

    /// The Euclidean norm of a point.
    #[ray::remote]
    pub fn norm(p: Point) -> f64 {
        (p.x * p.x + p.y * p.y).sqrt()
    }

    /// `p` scaled by `k`.
    #[ray::remote(num_cpus = 0.5)]
    pub fn scale(p: Point, k: f64) -> Point {
        Point {
            x: p.x * k,
            y: p.y * k,
        }
    }
}

/// Statistics over vectors.
pub mod stats {
    /// The sum of absolute values: the same task name as `geometry::norm`, another module.
    #[ray::remote]
    pub fn norm(values: Vec<f64>) -> f64 {
        values.iter().map(|v| v.abs()).sum()
    }

    /// Nested deeper still.
    pub mod nested {
        /// The largest absolute value: a third `norm`.
        #[ray::remote]
        pub fn norm(values: Vec<f64>) -> f64 {
            values.iter().fold(0.0, |m, v| m.max(v.abs()))
        }
    }
}

/// An actor with private state.
pub mod bank {
    /// A bank account; its fields are private to this module.
    #[ray::remote(max_restarts = 0)]
    pub struct Account {
        owner: String,
        balance: i64,
    }

    #[ray::remote]
    impl Account {
        /// Opens an account.
        pub fn new(owner: String, opening: i64) -> Self {
            Account {
                owner,
                balance: opening,
            }
        }

        /// Deposits `amount`, returns the new balance.
        pub fn deposit(&mut self, amount: i64) -> i64 {
            self.balance += amount;
            self.balance
        }

        /// The owner and the balance.
        pub fn statement(&self) -> (String, i64) {
            (self.owner.clone(), self.balance)
        }

        /// The worker's pid: an actor lives in a process of its own.
        pub fn pid(&self) -> u32 {
            std::process::id()
        }
    }
}

/// Tasks written without the prelude.
pub mod bare {
    #![no_implicit_prelude]

    /// Repeats `word` `n` times.
    #[::ray::remote]
    pub fn repeat(word: ::std::string::String, n: usize) -> ::std::string::String {
        word.repeat(n)
    }
}

/// Runs every task and actor of this library and describes the results, one per line.
pub fn exercise() -> ray::Result<Vec<String>> {
    use geometry::Point;
    let p = Point::new(3.0, 4.0);
    let scaled = geometry::scale::remote(p, 2.0);
    let lines = vec![
        format!("geometry::norm {}", ray::get(&geometry::norm::remote(p))?),
        format!("geometry::scale {:?}", ray::get(&scaled)?.coordinates()),
        format!(
            "geometry::norm(scale) {}",
            ray::get(&geometry::norm::remote(&scaled))?
        ),
        format!(
            "stats::norm {}",
            ray::get(&stats::norm::remote(vec![1.0, -2.0, 3.0]))?
        ),
        format!(
            "stats::nested::norm {}",
            ray::get(&stats::nested::norm::remote(vec![1.0, -7.0, 3.0]))?
        ),
        format!(
            "bare::repeat {}",
            ray::get(&bare::repeat::remote("ab".to_string(), 3))?
        ),
    ];
    let account = bank::Account::remote("ada".to_string(), 10);
    account.deposit(5);
    let statement = ray::get(&account.statement())?;
    let own_process = ray::get(&account.pid())? != std::process::id();
    Ok(lines
        .into_iter()
        .chain([format!("bank {statement:?} own_process={own_process}")])
        .collect())
}
