// An option given twice.

#[ray::remote(num_cpus = 1, num_gpus = 1, num_cpus = 2)]
fn twice() {}

#[ray::remote(resources(disk = 1, disk = 2))]
fn resource_twice() {}

fn main() {}
