"""Time one inference engine on one model, in a fresh process: `python time_engine.py ENGINE MODEL THREADS`.

Standalone on purpose (numpy and the engine only), so that it runs in the engines' own environments too:
tflite-runtime 2.14 needs numpy 1.x, tf2onnx its own pins. Prints one JSON line: median and p95 in ms, or the
error that kept the engine from loading the model.
"""

import importlib
import importlib.metadata
import json
import statistics
import sys
import time

import numpy as np

WARMUP_RUNS = 3
# The distribution each engine comes from: its version is read from the installed package, never written by hand.
DISTRIBUTIONS = {
    "litert": "ai-edge-litert",
    "tflite-runtime": "tflite-runtime",
    "tensorflow": "tensorflow",
    "onnxruntime": "onnxruntime",
}
TIMED_RUNS = 15


def interpreter_runner(module_name, model_path, threads):
    interpreter = importlib.import_module(module_name).Interpreter(model_path=model_path, num_threads=threads)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    pixels = np.random.default_rng(0).uniform(0, 255, source["shape"]).astype(np.float32)

    def run():
        interpreter.set_tensor(source["index"], pixels)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])

    return run


def keras_runner(model_path, threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    pixels = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, *model.input_shape[1:])).astype(np.float32))
    # A traced graph, as TensorFlow Serving runs a model, not eager calls.
    forward = tf.function(lambda batch: model(batch, training=False))
    return lambda: forward(pixels).numpy()


def onnx_runner(model_path, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in source.shape]
    pixels = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    return lambda: session.run(None, {source.name: pixels})


def main():
    engine, model_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        version = importlib.metadata.version(DISTRIBUTIONS[engine])
    except (KeyError, importlib.metadata.PackageNotFoundError):
        version = "not installed"
    try:
        if engine == "litert":
            run = interpreter_runner("ai_edge_litert.interpreter", model_path, threads)
        elif engine == "tflite-runtime":
            run = interpreter_runner("tflite_runtime.interpreter", model_path, threads)
        elif engine == "tensorflow":
            run = keras_runner(model_path, threads)
        elif engine == "onnxruntime":
            run = onnx_runner(model_path, threads)
        else:
            raise ValueError(f"unknown engine {engine}")
        for _ in range(WARMUP_RUNS):
            run()
    except Exception as error:  # the point is to report which engine cannot load which model, and why
        error_text = f"{type(error).__name__}: {error}"[:300]
        print(json.dumps({"engine": engine, "version": version, "threads": threads, "error": error_text}))
        return
    timings = []
    for _ in range(TIMED_RUNS):
        started = time.perf_counter()
        run()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    print(
        json.dumps(
            {
                "engine": engine,
                "version": version,
                "threads": threads,
                "median_ms": round(statistics.median(timings), 2),
                "p95_ms": round(timings[int(0.95 * (len(timings) - 1))], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
