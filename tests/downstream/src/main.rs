//! A binary that uses the library's tasks and actors and defines its own.

use ray::ActorHandle;
use ray_downstream::bank::Account;

/// A task of the binary itself, named like the library's.
#[ray::remote]
fn norm(values: Vec<i64>) -> i64 {
    values.iter().map(|v| v * v).sum()
}

/// An actor of the binary that holds a handle to an actor of the library.
#[ray::remote]
struct Teller {
    account: ActorHandle<Account>,
}

#[ray::remote]
impl Teller {
    fn new(account: ActorHandle<Account>) -> Self {
        Teller { account }
    }

    fn pay(&self, amounts: Vec<i64>) -> i64 {
        let mut last = 0;
        for a in amounts {
            last = ray::get(&self.account.deposit(a)).unwrap();
        }
        last
    }
}

fn main() -> ray::Result<()> {
    ray::init(ray::Config::default().num_cpus(2))?;
    for line in ray_downstream::exercise()? {
        println!("{line}");
    }
    println!("main::norm {}", ray::get(&norm::remote(vec![1, 2, 3]))?);
    let account = Account::remote("grace".to_string(), 0);
    let teller = Teller::remote(account.clone());
    println!("teller {}", ray::get(&teller.pay(vec![1, 2, 3, 4]))?);
    println!("account {:?}", ray::get(&account.statement())?);
    ray::shutdown();
    Ok(())
}
