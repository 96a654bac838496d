import leanfit


def test_public_names_are_exported_and_documented():
    for name in leanfit.__all__:
        assert getattr(leanfit, name).__doc__, name
    assert sorted(leanfit.__all__) == leanfit.__all__
    assert set(leanfit._LAZY) <= set(leanfit.__all__)
    assert set(dir(leanfit)) >= set(leanfit.__all__)
