//! AFL++ harness for the `top` target (see `flagsync_fuzz::targets::top`). `fuzz_nohook`: the target catches the
//! panics of known open findings itself; any other panic still aborts through `fuzz!`'s catch.

fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        flagsync_fuzz::targets::top(data);
    });
}
