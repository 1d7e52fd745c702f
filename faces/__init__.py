"""The face pipeline of whole photos: detection (``faces.detection``), alignment to the FFHQ template
(``faces.align``), paste-back of restored faces (``faces.paste``), identity distance (``faces.identity``)
and face presence rates (``faces.presence``)."""
