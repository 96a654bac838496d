"""The stages run in this process: :mod:`.train`, :mod:`.boost`, :mod:`.apply`
(predict, evaluate) and :mod:`.shrink`."""
