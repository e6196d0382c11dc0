// `ray::put`, `ray::get` and `ray::get_all` with a type serde cannot handle: an error that
// names the type and what it lacks, at the call.

struct Params {
    weights: Vec<f32>,
}

fn read(r: ray::ObjectRef<Params>) {
    let _ = ray::get(&r);
    let _ = ray::get_all(&[r]);
}

fn main() {
    let _ = ray::put(Params { weights: vec![] });
}
