//! AFL++ harness for the `admin` target (see `flagsync_fuzz::targets::admin`). `fuzz_nohook`: the target catches the
//! panics of known open findings itself; any other panic still aborts through `fuzz!`'s catch.

fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        flagsync_fuzz::targets::admin(data);
    });
}
