"""Classic Theano programs, run with only their imports changed."""

import numpy as np

import flowc as theano
import flowc.tensor as T


def test_tutorial_logistic_regression():
    rng = np.random.RandomState(0)
    N, feats = 200, 30
    inputs = rng.randn(N, feats)
    D = (inputs, (inputs @ rng.randn(feats) > 0).astype("float64"))  # learnable labels
    x = T.dmatrix("x")
    y = T.dvector("y")
    w = theano.shared(rng.randn(feats) * 0.01, name="w")
    b = theano.shared(0.0, name="b")
    p_1 = 1 / (1 + T.exp(-T.dot(x, w) - b))
    prediction = p_1 > 0.5
    xent = -y * T.log(p_1) - (1 - y) * T.log(1 - p_1)
    cost = xent.mean() + 0.01 * (w**2).sum()
    gw, gb = T.grad(cost, [w, b])
    train = theano.function(
        inputs=[x, y],
        outputs=[prediction, xent],
        updates=((w, w - 0.1 * gw), (b, b - 0.1 * gb)),
    )
    predict = theano.function(inputs=[x], outputs=prediction)
    losses = [train(D[0], D[1])[1].mean() for _ in range(100)]
    assert losses[-1] < 0.8 * losses[0]
    assert (predict(D[0]) == D[1]).mean() > 0.8


class LogisticRegression:
    """The deeplearning.net tutorial's classifier, as its users wrote it."""

    def __init__(self, input, n_in, n_out):
        self.W = theano.shared(np.zeros((n_in, n_out), dtype=theano.config.floatX), name="W")
        self.b = theano.shared(np.zeros((n_out,), dtype=theano.config.floatX), name="b")
        self.p_y_given_x = T.nnet.softmax(T.dot(input, self.W) + self.b)
        self.y_pred = T.argmax(self.p_y_given_x, axis=1)
        self.params = [self.W, self.b]

    def negative_log_likelihood(self, y):
        return -T.mean(T.log(self.p_y_given_x)[T.arange(y.shape[0]), y])

    def errors(self, y):
        return T.mean(T.neq(self.y_pred, y))


def test_minibatch_sgd_with_givens():
    rng = np.random.RandomState(1)
    n, n_in, n_out, batch_size = 300, 8, 3, 20
    centers = rng.randn(n_out, n_in) * 3
    labels = rng.randint(0, n_out, size=n)
    data = centers[labels] + rng.randn(n, n_in)
    train_set_x = theano.shared(np.asarray(data, dtype=theano.config.floatX), borrow=True)
    train_set_y = T.cast(theano.shared(np.asarray(labels, dtype=theano.config.floatX)), "int32")

    index = T.lscalar()
    x = T.matrix("x")
    y = T.ivector("y")
    classifier = LogisticRegression(input=x, n_in=n_in, n_out=n_out)
    cost = classifier.negative_log_likelihood(y)
    g_W = T.grad(cost=cost, wrt=classifier.W)
    g_b = T.grad(cost=cost, wrt=classifier.b)
    learning_rate = 0.1
    updates = [
        (classifier.W, classifier.W - learning_rate * g_W),
        (classifier.b, classifier.b - learning_rate * g_b),
    ]
    train_model = theano.function(
        inputs=[index],
        outputs=cost,
        updates=updates,
        givens={
            x: train_set_x[index * batch_size : (index + 1) * batch_size],
            y: train_set_y[index * batch_size : (index + 1) * batch_size],
        },
    )
    test_model = theano.function(
        inputs=[], outputs=classifier.errors(y), givens={x: train_set_x, y: train_set_y}
    )
    n_batches = n // batch_size
    first = np.mean([train_model(i) for i in range(n_batches)])
    for _epoch in range(5):
        last = np.mean([train_model(i) for i in range(n_batches)])
    assert last < 0.5 * first
    assert float(test_model()) < 0.1
