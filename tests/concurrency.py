"""One thread per input set, each calling a function repeatedly: what threads see."""

import threading


def results_from_threads(call, inputs: list, repeats: int) -> list[list]:
    """``call(inputs[k])`` run ``repeats`` times in thread k, all threads at once; returns,
    per k, every result that thread got (so a caller can compare each with the serial one)."""
    got = [[] for _ in inputs]

    def work(k):
        for _ in range(repeats):
            got[k].append(call(inputs[k]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got
