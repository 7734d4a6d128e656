"""Train a small multilayer perceptron on scikit-learn's 8x8 digits, written as in Theano.

    python scripts/demo_mlp.py [--epochs 20]

64 inputs -> 64 tanh units -> 10-way softmax, plain minibatch SGD with a little L2.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import flowc as th
import flowc.tensor as T


def load_data(seed=0, test_fraction=0.2):
    """The digits scaled to [0, 1], shuffled with ``seed``, split into train and test."""
    from sklearn.datasets import load_digits

    floatX = th.config.floatX
    digits = load_digits()
    X = (digits.data / 16.0).astype(floatX)
    y = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order]
    n_train = len(X) - int(round(test_fraction * len(X)))
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def build_model(n_in, n_hidden, n_out, learning_rate, l2, rng):
    """Compile the training step (returns the minibatch cost) and the class predictor."""
    floatX = th.config.floatX
    x = T.matrix("x")
    y = T.lvector("y")

    def weights(n_rows, n_cols, name):
        scale = np.sqrt(1.0 / n_rows)
        return th.shared(rng.normal(0, scale, size=(n_rows, n_cols)).astype(floatX), name=name)

    W1 = weights(n_in, n_hidden, "W1")
    b1 = th.shared(np.zeros(n_hidden, dtype=floatX), name="b1")
    W2 = weights(n_hidden, n_out, "W2")
    b2 = th.shared(np.zeros(n_out, dtype=floatX), name="b2")
    params = [W1, b1, W2, b2]

    hidden = T.tanh(T.dot(x, W1) + b1)
    p_y_given_x = T.nnet.softmax(T.dot(hidden, W2) + b2)
    nll = T.nnet.categorical_crossentropy(p_y_given_x, y).mean()
    cost = nll + l2 * ((W1**2).sum() + (W2**2).sum())

    grads = T.grad(cost, params)
    updates = [(p, p - learning_rate * g) for p, g in zip(params, grads, strict=True)]
    train = th.function([x, y], cost, updates=updates)
    predict = th.function([x], T.argmax(p_y_given_x, axis=1))
    return train, predict


def main(epochs=20, quiet=False, n_hidden=64, batch_size=32, learning_rate=0.2, l2=1e-4, seed=0):
    """Train for ``epochs`` and return the accuracy on the held-out 20% of the digits."""
    say = (lambda *a: None) if quiet else print
    X_train, y_train, X_test, y_test = load_data(seed)
    rng = np.random.default_rng(seed + 1)
    train, predict = build_model(X_train.shape[1], n_hidden, 10, learning_rate, l2, rng)
    say(
        f"digits: {len(X_train)} train / {len(X_test)} test, MLP 64-{n_hidden}-10, "
        f"batch {batch_size}, lr {learning_rate}, floatX {th.config.floatX}"
    )
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(X_train))
        losses = []
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            losses.append(float(train(X_train[batch], y_train[batch])))
        say(f"epoch {epoch:3d}  mean train loss {np.mean(losses):.4f}")
    accuracy = float(np.mean(predict(X_test) == y_test))
    say(f"held-out accuracy {accuracy:.4f} ({time.perf_counter() - start:.1f} s of training)")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    acc = main(epochs=args.epochs)
    if acc < 0.9:
        print(f"FAILED: accuracy {acc:.4f} is below 0.9", file=sys.stderr)
        sys.exit(1)
