"""Linear probing: an L2 logistic regression on frozen features, installed as the head."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Cross-validated L2 logistic regression, as in the paper's LP stage.

    The grid is scikit-learn's ``Cs=10`` (10 values log-spaced over 1e-4..1e4), the folds are
    stratified, shuffled and seeded (the paper's unshuffled folds would follow any ordering of
    the file), accuracy (or ``scoring``) picks C, and the final model is refit on all rows at
    the best C. Features are not standardised, as in the paper: the head must act on phi(x)
    as it is.

    Args:
        Cs: number of C values, or the values themselves.
        cv: folds (reduced to the smallest class count when a class is rarer).
        max_iter: lbfgs iteration limit.
        tol: lbfgs tolerance.
        random_state: seed of the fold shuffling.
        scoring: what picks C: ``accuracy`` (the paper's) or ``neg_log_loss``.
    """

    def __init__(
        self,
        Cs: int | list[float] = 10,
        cv: int = 5,
        max_iter: int = 5000,
        tol: float = 1e-4,
        random_state: int = 0,
        scoring: str = "accuracy",
    ) -> None:
        self.Cs = Cs
        self.cv = cv
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.scoring = scoring

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        """Fit on features ``X`` of shape (n, d) and class indices ``y`` of shape (n,)."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        n_splits = int(min(self.cv, np.bincount(y).min()))
        folds = StratifiedKFold(
            n_splits=max(n_splits, 2), shuffle=True, random_state=self.random_state
        )
        self.model_ = LogisticRegressionCV(
            Cs=self.Cs,
            cv=folds,
            l1_ratios=(0.0,),
            scoring=self.scoring,
            solver="lbfgs",
            max_iter=self.max_iter,
            tol=self.tol,
            use_legacy_attributes=False,
        ).fit(X, y)
        self.classes_ = self.model_.classes_
        self.C_ = float(self.model_.C_)
        self.grid_ = (float(self.model_.Cs_.min()), float(self.model_.Cs_.max()))
        self.cv_folds_ = folds.n_splits
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, C)."""
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(np.asarray(X, dtype=np.float64))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted class indices, shape (n,)."""
        check_is_fitted(self, "model_")
        return self.model_.predict(np.asarray(X, dtype=np.float64))

    def head_parameters(self) -> tuple[np.ndarray, np.ndarray]:
        """(V, b) of shape (C, d) and (C,) whose softmax(V·x + b) equals ``predict_proba``.

        A binary fit has one vector w and p(1) = sigmoid(w·x + c); softmax over the rows
        (-w/2, +w/2) with biases (-c/2, +c/2) gives exactly that probability.
        """
        check_is_fitted(self, "model_")
        coef, intercept = self.model_.coef_, self.model_.intercept_
        if coef.shape[0] == 1:
            coef = np.concatenate([-coef / 2, coef / 2])
            intercept = np.concatenate([-intercept / 2, intercept / 2])
        return coef, intercept


@torch.no_grad()
def install_head(head: torch.nn.Linear, weight: np.ndarray, bias: np.ndarray) -> None:
    """Copy (V, b) into ``head`` in place, keeping its dtype and device."""
    head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
    head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))


@torch.no_grad()
def scale_head(head: torch.nn.Linear, factor: float) -> None:
    """Multiply the head's weight and bias by ``factor`` (the paper's head-norm experiment)."""
    head.weight.mul_(factor)
    head.bias.mul_(factor)
